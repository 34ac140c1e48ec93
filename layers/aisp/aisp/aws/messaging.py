"""AWS messaging adapters of the refresher: the fintech's EventBridge bus and the fan-out SQS queue.

boto3 is imported and the clients are built on first use (never at import), once per container, sized for the
refresher's worker threads (boto3 clients are thread-safe once built; building one is not, hence the lock).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from aisp.errors import EventPublishError, FanoutError
from aisp.models.refresh import FanoutRequest, LifecycleEvent
from aisp.observability import tracer

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["EVENT_SOURCE", "EventBridgePublisher", "SqsFanoutQueue"]

# ``source`` of every lifecycle event (rules on the fintech's bus match on it).
EVENT_SOURCE: Final = "aisp.gateway"
_SQS_BATCH: Final = 10
_lock = threading.Lock()


def _client(service: str, *, request_path: bool = False) -> Any:
    import boto3  # noqa: PLC0415 - heavy; only the refresher needs these clients
    from botocore.config import Config  # noqa: PLC0415

    if request_path:
        # A user waits for the answer and the event is best effort there: one short try, not 4 of up to 7 s each
        config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 1})
    else:
        config = Config(
            max_pool_connections=64, connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}
        )
    with _lock:
        return boto3.client(service, config=config)  # type: ignore[call-overload]


class EventBridgePublisher:
    """Publishes lifecycle events to one bus.

    Parameters
    ----------
    bus_name
        Name or ARN of the bus (``EVENT_BUS_NAME``).
    client
        An EventBridge client to use (tests); one is built on first use otherwise.
    request_path
        Published while a user waits (a live read's events): the client makes one short attempt.
    """

    def __init__(self, bus_name: str, *, client: EventBridgeClient | None = None, request_path: bool = False) -> None:
        self._bus = bus_name
        self._client = client
        self._request_path = request_path

    def _events(self) -> EventBridgeClient:
        if self._client is None:
            self._client = _client("events", request_path=self._request_path)
        return self._client

    @tracer.capture_method(capture_response=False)
    def publish(self, event: LifecycleEvent) -> None:
        """Put one event (``source`` = ``aisp.gateway``, ``detail-type`` = the event type, ``detail`` = ids + dates).

        Raises
        ------
        EventPublishError
            The call failed or the bus refused the entry.
        """
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": event.detail_type.value,
            "Detail": event.detail.model_dump_json(),
            "EventBusName": self._bus,
        }
        try:
            response = self._events().put_events(Entries=[entry])  # type: ignore[list-item]
        except (BotoCoreError, ClientError) as exc:
            raise EventPublishError("event bus call failed", details={"detail_type": event.detail_type.value}) from exc
        if response.get("FailedEntryCount"):
            failed = response.get("Entries", [{}])[0]
            raise EventPublishError(
                "event bus refused the event",
                details={"detail_type": event.detail_type.value, "error_code": failed.get("ErrorCode")},
            )


class SqsFanoutQueue:
    """Sends fan-out requests to a scheduled function's own queue (the refresher's ``REFRESH_FANOUT_QUEUE_URL``, the
    sync's ``SYNC_FANOUT_QUEUE_URL``).

    Parameters
    ----------
    queue_url
        The queue URL.
    client
        An SQS client to use (tests); one is built on first use otherwise.
    """

    def __init__(self, queue_url: str, *, client: SQSClient | None = None) -> None:
        self._url = queue_url
        self._client = client

    def _sqs(self) -> SQSClient:
        if self._client is None:
            self._client = _client("sqs")
        return self._client

    @tracer.capture_method(capture_response=False)
    def send(self, requests: list[FanoutRequest]) -> None:
        """Send every request (batches of 10).

        Raises
        ------
        FanoutError
            A batch call failed or some messages were refused; nothing tells which were sent before, but a
            duplicate only makes two invocations compete for the same leases.
        """
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        for start in range(0, len(requests), _SQS_BATCH):
            chunk = requests[start : start + _SQS_BATCH]
            entries = [
                {"Id": str(index), "MessageBody": request.model_dump_json()} for index, request in enumerate(chunk)
            ]
            try:
                response = self._sqs().send_message_batch(QueueUrl=self._url, Entries=entries)  # type: ignore[arg-type]
            except (BotoCoreError, ClientError) as exc:
                raise FanoutError("fan-out queue call failed", details={"messages": len(chunk)}) from exc
            if response.get("Failed"):
                raise FanoutError("fan-out queue refused messages", details={"failed": len(response["Failed"])})
