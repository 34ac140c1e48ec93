"""The local stack (``make run``): moto + the offline sandbox + ``template.yaml``'s HTTP API, in one process.

:func:`local.stack.start_stack` starts it from Python (the e2e tests); ``python -m local`` from a shell. The HTTP
API adapter (:mod:`local.adapter`) reads the template (:mod:`local.template`), builds API Gateway payload 2.0
events (:mod:`local.events`) and checks JWTs from a local issuer (:mod:`local.jwt`). Never deployed.
"""
