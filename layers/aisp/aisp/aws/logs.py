"""Where the audit trail is kept: the records the functions wrote (``aisp.audit``), as CloudWatch Logs' subscription
hands them over, written to the audit log group. Used by ``AuditShipperFunction`` only. Design: ``docs/audit.md``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from aisp.audit import MARKER
from aisp.errors import InvalidRequestError

__all__ = ["LogGroupWriter", "SubscriptionBatch", "decode_subscription"]

# CloudWatch Logs limits of one PutLogEvents: 10,000 events, 1 MiB (each event counting 26 bytes more).
MAX_BATCH_EVENTS: Final = 10_000
MAX_BATCH_BYTES: Final = 1_000_000
EVENT_OVERHEAD: Final = 26


class SubscriptionBatch:
    """The audit events of one subscription delivery: ``(timestamp ms, message)``, each message the record's JSON
    (the marker removed, the log event's id added so a redelivered batch can be told from new records)."""

    def __init__(self, events: list[tuple[int, str]], *, source: str) -> None:
        self.events = events
        self.source = source


def decode_subscription(event: dict[str, Any]) -> SubscriptionBatch:
    """The audit records in a CloudWatch Logs subscription event (``awslogs.data``: base64 of gzipped JSON).

    Lines without the marker (the filter should not send any) and control messages are skipped.

    Raises
    ------
    InvalidRequestError
        The event is not a subscription delivery.
    """
    try:
        payload = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise InvalidRequestError("not a CloudWatch Logs subscription event") from exc
    if payload.get("messageType") != "DATA_MESSAGE":
        return SubscriptionBatch([], source=str(payload.get("logGroup", "")))
    events: list[tuple[int, str]] = []
    for log_event in payload.get("logEvents", []):
        try:
            record = json.loads(log_event["message"])
        except (KeyError, TypeError, ValueError):
            continue
        if not isinstance(record, dict) or record.pop(MARKER, None) is None:
            continue
        record["log_event_id"] = str(log_event.get("id", ""))
        events.append((int(log_event["timestamp"]), json.dumps(record, sort_keys=True, separators=(",", ":"))))
    return SubscriptionBatch(events, source=str(payload.get("logGroup", "")))


class LogGroupWriter:
    """``PutLogEvents`` to one log group, on a stream of this container's own (created on its first write).

    Parameters
    ----------
    group
        The audit log group (``AUDIT_LOG_GROUP_NAME``).
    client
        A CloudWatch Logs client (tests); one is built on first use otherwise.
    """

    def __init__(self, group: str, *, client: Any = None) -> None:
        self.group = group
        self.stream = f"{datetime.now(UTC):%Y/%m/%d}/shipper/{uuid.uuid4().hex}"
        self._client = client
        self._created = False
        self._lock = threading.Lock()

    def write(self, events: list[tuple[int, str]]) -> int:
        """Write ``events`` in time order, in as few calls as the limits allow; returns how many were written."""
        ordered = [{"timestamp": timestamp, "message": message} for timestamp, message in sorted(events)]
        with self._lock:
            for batch in _batches(ordered):
                client = self._logs()
                try:
                    client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
                except client.exceptions.ResourceNotFoundException:
                    self._created = False  # the stream is gone (deleted by hand): create it again, once
                    self._logs().put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
        return len(ordered)

    def _logs(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 - on the first write of a container
            from botocore.config import Config  # noqa: PLC0415

            config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 5})
            self._client = boto3.client("logs", config=config)
        if not self._created:
            with contextlib.suppress(self._client.exceptions.ResourceAlreadyExistsException):
                self._client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
            self._created = True
        return self._client


def _batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for event in events:
        weight = len(event["message"].encode()) + EVENT_OVERHEAD
        if batches[-1] and (len(batches[-1]) >= MAX_BATCH_EVENTS or size + weight > MAX_BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(event)
        size += weight
    return [batch for batch in batches if batch]
