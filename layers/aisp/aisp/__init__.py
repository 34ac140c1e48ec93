"""aisp: the shared package of the BPCE AISP gateway (signing, mTLS, STET client, bank registry, storage, use cases).

Shipped to every function through ``AispLayer``. Importing the package does nothing: each submodule is loaded
on first use, so a function's cold start pays only for what it touches.
"""
