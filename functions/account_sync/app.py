"""AccountSyncFunction: the EventBridge Scheduler target that syncs every ACTIVE connection's consented accounts
without the user (``aisp.logic.sync.scheduler``), within the bank's daily quota, and the consumer of its own fan-out
queue (SQS, one message = the shards one invocation syncs). Design: ``docs/sync.md``.

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
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A scheduled run (may fan out; returns its summary, counts only), or the fan-out messages of an SQS batch
    (returns the partial batch response: a message whose shards could not be read, or that is not a fan-out
    request, is redelivered, then kept in the dead-letter queue)."""
    from pydantic import ValidationError  # noqa: PLC0415 - see the module docstring

    from aisp.logic.sync.scheduler import sync_due_connections, sync_fanout_request  # noqa: PLC0415
    from aisp.models.refresh import FanoutRequest  # noqa: PLC0415

    run_id = context.aws_request_id
    services, policy = wiring.sync_services(), wiring.sync_policy()
    records = event.get("Records")
    if not records:
        summary = sync_due_connections(
            remaining_ms=context.get_remaining_time_in_millis, run_id=run_id, services=services, policy=policy
        )
        return summary.model_dump(mode="json")

    runs: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for record in records:
        try:
            request = FanoutRequest.model_validate_json(record["body"])
        except ValidationError:
            logger.error("not a fan-out request", message_id=record["messageId"])
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        logger.info("fan-out request", shards=list(request.shards), origin_run_id=request.run_id)
        summary = sync_fanout_request(
            request, remaining_ms=context.get_remaining_time_in_millis, run_id=run_id, services=services, policy=policy
        )
        if summary.failed_shards:
            failures.append({"itemIdentifier": record["messageId"]})
        runs.append(summary.model_dump(mode="json"))
    return {"batchItemFailures": failures, "runs": runs}
