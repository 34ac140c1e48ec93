"""The one place where the Powertools logger, tracer and metrics are created (STYLE.md §6).

Service name, namespace and level come from ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE`` and
``POWERTOOLS_LOG_LEVEL`` (template Globals). Import these singletons everywhere; never create another ``Logger()``.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["logger", "metrics", "tracer"]
