"""The local stack's controls: run a schedule now, move the offline sandbox's clock. Never in the template.

* ``POST /_local/schedules/{FunctionLogicalId}`` (body optional: ``{"due_now": true}``) invokes that function with
  the event its schedule delivers and answers the function's result (its run summary). ``due_now`` (the sync only)
  first makes every scheduled connection's next sync time now: the gateway's clock stays real time locally, so a
  connection's first slot, or its next after the bank's clock moved a day, has not come yet.
* ``POST /_local/sandbox/clock`` with ``{"advance_seconds": N}`` moves the sandbox's clock through its admin API and
  answers the sandbox's new time (``now``, ``clock_offset_seconds``) beside the gateway's (``gateway_now``).

Both answer loopback callers only, and a browser only from the page's own origin (no other site can drive them
from a user's browser). Errors are API Gateway-shaped: ``{"message": ...}``. Usage: ``local/README.md``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import requests

from local.adapter import InvocationError
from local.aws import aws_client
from local.events import HttpResponse, IncomingRequest

logger = logging.getLogger("local.controls")

SCHEDULES_PREFIX: Final = "/_local/schedules/"
CLOCK_PATH: Final = "/_local/sandbox/clock"
SYNC_FUNCTION: Final = "AccountSyncFunction"
SYNC_TABLE: Final = "SyncTable"
FEED_HEAD: Final = "feed"  # the sort key of a connection's feed head (docs/sync.md, The store)
ADMIN_TIMEOUT: Final = 10.0


class ControlError(Exception):
    """A control request that cannot be served: its HTTP status and a message saying what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxAdmin:
    """Where the sandbox's admin API is and how to reach it (its CA; our QWAC, which it does not require)."""

    admin_url: str
    ca_path: str
    client_cert: tuple[str, str]
    max_advance_seconds: float


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback IP (``127.0.0.0/8``, ``::1``, ``::ffff:127.x``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _message(status: int, message: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("content-type", "application/json"), ("cache-control", "no-store")], body)


def _ok(payload: Any) -> HttpResponse:
    body = json.dumps(payload).encode()
    return HttpResponse(200, [("content-type", "application/json"), ("cache-control", "no-store")], body)


def _own_origin(request: IncomingRequest) -> bool:
    """A browser's request comes from the page itself: its ``Origin`` is this server as the browser named it
    (``Host``), which must be a loopback name (not a rebound DNS name). No ``Origin``: not a browser's cross-site
    request (curl, the demo, tests)."""
    origin = request.header("origin")
    if origin is None:
        return True
    host = (request.header("host") or "").lower()
    allowed = {f"127.0.0.1:{request.server_port}", f"localhost:{request.server_port}", f"[::1]:{request.server_port}"}
    return host in allowed and origin.lower() == f"http://{host}"


def _json_object(request: IncomingRequest, *, required: bool) -> dict[str, Any]:
    if not request.body.strip():
        if required:
            raise ControlError(400, "send a JSON object body")
        return {}
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        raise ControlError(400, "the body is not JSON: send a JSON object") from None
    if not isinstance(payload, dict):
        raise ControlError(400, "the body must be a JSON object")
    return payload


class LocalControls:
    """The ``POST /_local/...`` controls of one running stack.

    Parameters
    ----------
    schedules
        Each scheduled function's logical id → a callable invoking it once with its scheduled event.
    functions
        Every function's logical id (to tell "no such function" from "no schedule").
    sandbox
        The sandbox's admin API.
    moto_url
        ``AWS_ENDPOINT_URL`` of the stack.
    sync_table
        The physical name of ``SyncTable`` (``None``: the template has none).
    """

    def __init__(
        self,
        *,
        schedules: Mapping[str, Callable[[], Any]],
        functions: frozenset[str],
        sandbox: SandboxAdmin,
        moto_url: str,
        sync_table: str | None,
    ) -> None:
        self._schedules = dict(schedules)
        self._functions = functions
        self._sandbox = sandbox
        self._moto_url = moto_url
        self._sync_table = sync_table

    @staticmethod
    def serves(request: IncomingRequest) -> bool:
        """Whether ``request`` is for a control (any method: a GET gets 405)."""
        return request.raw_path.startswith(SCHEDULES_PREFIX) or request.raw_path == CLOCK_PATH

    def handle(self, request: IncomingRequest) -> HttpResponse:
        """Answer a control request (:meth:`serves`)."""
        if not is_loopback(request.source_ip):
            return _message(403, "the local controls answer loopback callers only")
        if not _own_origin(request):
            return _message(403, "the local controls answer the quickstart page's own origin only")
        if request.method != "POST":
            response = _message(405, "use POST")
            response.headers.append(("allow", "POST"))
            return response
        try:
            if request.raw_path == CLOCK_PATH:
                return _ok(self.advance_clock(_json_object(request, required=True)))
            function = request.raw_path.removeprefix(SCHEDULES_PREFIX)
            return _ok(self.run_schedule(function, _json_object(request, required=False)))
        except ControlError as exc:
            return _message(exc.status, str(exc))

    def run_schedule(self, function: str, options: Mapping[str, Any]) -> Any:
        """Invoke ``function``'s schedule once now; its result.

        Raises
        ------
        ControlError
            No such function, no schedule, bad options (400), or the function failed (500).
        """
        scheduled = ", ".join(sorted(self._schedules)) or "none"
        if function not in self._schedules:
            what = "has no schedule" if function in self._functions else "is not a function of the template"
            raise ControlError(404, f"{function or '(empty)'} {what}: the scheduled functions are {scheduled}")
        unknown = sorted(set(options) - {"due_now"})
        if unknown:
            raise ControlError(400, f"unknown field {unknown[0]}: the only option is due_now (true or false)")
        due_now = options.get("due_now", False)
        if not isinstance(due_now, bool):
            raise ControlError(400, "due_now must be true or false")
        if due_now and function != SYNC_FUNCTION:
            raise ControlError(400, f"due_now is for {SYNC_FUNCTION} only")
        if due_now:
            made_due = self._make_every_connection_due()
            logger.info("%d connection(s) made due for the sync", made_due)
        try:
            return self._schedules[function]()
        except InvocationError as exc:
            raise ControlError(500, f"{exc}: see the stack's log") from exc

    def _make_every_connection_due(self) -> int:
        """``next_sync_at`` = now on every feed head in the sync's due index (``SyncDueIndex``'s range key: setting it
        moves the head in the index; a head out of the index, a connection not to sync, stays out)."""
        if self._sync_table is None:
            raise ControlError(400, f"the template has no {SYNC_TABLE}: due_now has nothing to do")
        dynamodb = aws_client("dynamodb", self._moto_url)
        now = str(int(datetime.now(UTC).timestamp()))
        count = 0
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=self._sync_table,
            FilterExpression="sk = :head AND attribute_exists(sync_shard)",
            ExpressionAttributeValues={":head": {"S": FEED_HEAD}},
            ProjectionExpression="connection_id, sk",
        ):
            for key in page["Items"]:
                dynamodb.update_item(
                    TableName=self._sync_table,
                    Key=key,
                    UpdateExpression="SET next_sync_at = :now",
                    ExpressionAttributeValues={":now": {"N": now}},
                )
                count += 1
        return count

    def advance_clock(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Move the sandbox's clock by ``advance_seconds``; the sandbox's new time and the gateway's.

        Raises
        ------
        ControlError
            A missing, non-numeric or out-of-range value (400), the admin API off (409), the sandbox unreachable
            (502).
        """
        unknown = sorted(set(options) - {"advance_seconds"})
        if unknown:
            raise ControlError(400, f'unknown field {unknown[0]}: send {{"advance_seconds": N}}')
        limit = self._sandbox.max_advance_seconds
        seconds = options.get("advance_seconds")
        if seconds is None:
            raise ControlError(400, 'advance_seconds is missing: send {"advance_seconds": 86400} to move a day')
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ControlError(400, "advance_seconds must be a number of seconds")
        if abs(seconds) > limit:
            days = limit / 86_400
            limits = f"±{limit:.0f} (the sandbox's limit: {days:.0f} days)"
            raise ControlError(400, f"advance_seconds must be within {limits}")
        try:
            with requests.Session() as session:
                session.trust_env = False  # the sandbox is on this machine: no proxy
                answer = session.post(
                    f"{self._sandbox.admin_url}/clock",
                    json={"advance_seconds": seconds},
                    verify=self._sandbox.ca_path,
                    cert=self._sandbox.client_cert,
                    timeout=ADMIN_TIMEOUT,
                )
        except requests.RequestException as exc:
            raise ControlError(502, f"the sandbox's admin API did not answer ({type(exc).__name__})") from exc
        if answer.status_code == 404:  # noqa: PLR2004
            raise ControlError(
                409, "the sandbox's admin API is off: start the stack with --sandbox-admin (or SANDBOX_ADMIN=1)"
            )
        if answer.status_code != 200:  # noqa: PLR2004
            raise ControlError(502, f"the sandbox's admin API answered {answer.status_code}: {answer.text[:200]}")
        moved: dict[str, Any] = answer.json()
        return {
            "now": moved["now"],
            "clock_offset_seconds": moved["clock_offset_seconds"],
            "gateway_now": datetime.now(UTC).isoformat(timespec="seconds"),
        }
