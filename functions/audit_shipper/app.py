"""AuditShipperFunction: the destination of the subscription filter on the functions' log group.

Writes the audit lines the functions printed (``aisp.audit``) to the audit log group (``aisp.aws.logs``). A
failure raises: CloudWatch Logs invokes asynchronously, so Lambda retries the delivery twice, then puts it in the
dead-letter queue; nothing is dropped silently. Design: ``docs/audit.md``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp import wiring
from aisp.aws.logs import decode_subscription
from aisp.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = decode_subscription(event)
    written = wiring.audit_writer().write(batch.events)
    metrics.add_metric(name="AuditRecordsShipped", unit=MetricUnit.Count, value=written)
    logger.info("audit records shipped", records=written, source=batch.source)
    return {"written": written}
