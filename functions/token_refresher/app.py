"""TokenRefresherFunction: the EventBridge Scheduler target that keeps connections' tokens fresh, and the consumer of
its own fan-out queue (SQS, one message = the shards one invocation refreshes).

The use case (``aisp.logic.refresh.scheduler``) is imported on the first invocation, not at init: it brings PynamoDB,
botocore and the STET client, which the cold-start budget leaves no room for (``python -m bench.cold_start``).
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
    """A scheduled run (may fan out), or the fan-out messages of an SQS batch; returns the run summaries.

    Raises ``TokenRefreshBatchError`` at the end when a connection failed unexpectedly (the Errors alarm); an SQS
    batch is then redelivered, which only retries what is still due.
    """
    from aisp.errors import TokenRefreshBatchError  # noqa: PLC0415 - see the module docstring
    from aisp.logic.refresh.scheduler import refresh_due_connections, refresh_fanout_request  # noqa: PLC0415
    from aisp.models.refresh import FanoutRequest  # noqa: PLC0415

    run_id = context.aws_request_id
    services, policy = wiring.refresher_services(), wiring.refresh_policy()
    records = event.get("Records")
    if not records:
        summary = refresh_due_connections(
            remaining_ms=context.get_remaining_time_in_millis, run_id=run_id, services=services, policy=policy
        )
        return {"runs": [summary.model_dump(mode="json", exclude={"failed_ids"})]}

    runs: list[dict[str, Any]] = []
    failed: list[str] = []
    for record in records:
        request = FanoutRequest.model_validate_json(record["body"])
        logger.info("fan-out request", shards=list(request.shards), origin_run_id=request.run_id)
        try:
            summary = refresh_fanout_request(
                request,
                remaining_ms=context.get_remaining_time_in_millis,
                run_id=run_id,
                services=services,
                policy=policy,
            )
        except TokenRefreshBatchError as exc:
            failed += exc.failed_ids
            continue
        runs.append(summary.model_dump(mode="json", exclude={"failed_ids"}))
    if failed:
        raise TokenRefreshBatchError(failed, details={"run_id": run_id})
    return {"runs": runs}
