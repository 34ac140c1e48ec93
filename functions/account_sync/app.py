"""AccountSyncFunction: the EventBridge Scheduler target that syncs every ACTIVE connection's consented accounts
without the user (``aisp.logic.sync.scheduler``), within the bank's daily quota. Design: ``docs/sync.md``.

The use case is imported on the first invocation, not at init (PynamoDB, botocore, the STET client).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp import audit, wiring
from aisp.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@audit.invocation
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:  # noqa: ARG001 - a schedule
    """One scheduled run; returns its summary (counts only)."""
    from aisp.logic.sync.scheduler import sync_due_connections  # noqa: PLC0415 - see the module docstring

    summary = sync_due_connections(
        remaining_ms=context.get_remaining_time_in_millis,
        run_id=context.aws_request_id,
        services=wiring.sync_services(),
        policy=wiring.sync_policy(),
    )
    return summary.model_dump(mode="json")
