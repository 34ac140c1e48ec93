"""Test controls under ``/_admin/...`` on the HTTPS listener: loopback callers only, and only when enabled
(``SANDBOX_ADMIN=1`` or ``admin=True`` in the config). Disabled, every admin path is a plain 404.

=======================================  =============================================================================
``GET  /_admin/state``                   clock, fault rules, latencies, live grants per bank
``POST /_admin/latency``                 ``{"ms": 50, "scope": "any|token|aisp", "bank": null}``
``POST /_admin/faults``                  ``{"fault": "500|503|timeout|429|tmrq|slow", "scope": ..., "bank": ...,
                                         "every": 2, "ratio": null, "seed": 0, "times": null, "retry_after": 60,
                                         "hang_seconds": 30, "page": null, "path": null}``
``DELETE /_admin/faults``                remove every fault rule
``POST /_admin/revoke``                  ``{"bank": "13807", "psu": "D0999990I0"}``: revoke tokens (either may be null)
``POST /_admin/expire-refresh-tokens``   same body: refresh tokens expire now
``POST /_admin/expire-access-tokens``    same body: access tokens expire now
``POST /_admin/clock``                   ``{"advance_seconds": 86400}``
``POST /_admin/reset``                   forget tokens, consents, quotas, faults; clock back to real time
=======================================  =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.core import SandboxCore
from sandbox.faults import FaultRule, LatencyRule
from sandbox.stet import error_model
from sandbox.store import BankStore
from sandbox.web import Request, Response, json_response

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
MAX_ADVANCE_SECONDS = 400 * 86_400


class Target(BaseModel):
    """Which tokens an admin action touches: one bank and/or one PSU, or all."""

    model_config = ConfigDict(extra="forbid")

    bank: str | None = None
    psu: str | None = None


class ClockAdvance(BaseModel):
    """Move the sandbox clock."""

    model_config = ConfigDict(extra="forbid")

    advance_seconds: float = Field(ge=-MAX_ADVANCE_SECONDS, le=MAX_ADVANCE_SECONDS)


class AdminApp:
    """The ``/_admin`` routes."""

    def __init__(self, core: SandboxCore) -> None:
        self._core = core
        self._routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "state"): self._state,
            ("POST", "latency"): self._latency,
            ("POST", "faults"): self._add_fault,
            ("DELETE", "faults"): self._clear_faults,
            ("POST", "revoke"): self._revoke,
            ("POST", "expire-refresh-tokens"): self._expire_refresh,
            ("POST", "expire-access-tokens"): self._expire_access,
            ("POST", "clock"): self._clock,
            ("POST", "reset"): self._reset,
        }

    def handle(self, request: Request) -> Response:
        """Answer an admin call, or 404 when the admin API is off or the caller is not on loopback."""
        name = request.path.removeprefix("/_admin").strip("/")
        route = self._routes.get((request.method, name))
        if not self._core.admin_enabled or request.client_ip not in LOOPBACK or route is None:
            return self._error(HTTPStatus.NOT_FOUND, "Resource not found", request.path)
        try:
            return route(request)
        except ValidationError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, _first_error(exc), request.path)
        except LookupError:
            return self._error(HTTPStatus.BAD_REQUEST, "Unknown bank code", request.path)

    def _error(self, status: int, message: str, path: str) -> Response:
        return json_response(
            status, error_model(status, HTTPStatus(status).phrase, message, path, self._core.clock.now())
        )

    def _stores(self, bank: str | None) -> list[BankStore]:
        if bank is None:
            return list(self._core.stores.values())
        return [self._core.stores[bank]]

    def _state(self, _request: Request) -> Response:
        now = self._core.clock.now()
        banks: dict[str, Any] = {}
        for code, store in self._core.stores.items():
            with store.lock:
                banks[code] = {
                    "grants": len(store.grants),
                    "consents_changed": len(store.consents),
                    "served": dict(store.served),
                }
        body = {
            "now": datetime.fromtimestamp(now, UTC).isoformat(),
            "clock_offset_seconds": self._core.clock.offset,
            **self._core.faults.snapshot(),
            "banks": banks,
        }
        return json_response(HTTPStatus.OK, body)

    def _latency(self, request: Request) -> Response:
        rule = LatencyRule.model_validate_json(request.body or b"{}")
        self._check_bank(rule.bank)
        self._core.faults.set_latency(rule)
        return json_response(HTTPStatus.OK, rule.model_dump(mode="json"))

    def _add_fault(self, request: Request) -> Response:
        rule = FaultRule.model_validate_json(request.body or b"{}")
        self._check_bank(rule.bank)
        self._core.faults.add(rule)
        return json_response(HTTPStatus.CREATED, rule.model_dump(mode="json"))

    def _clear_faults(self, _request: Request) -> Response:
        self._core.faults.clear()
        return Response(HTTPStatus.NO_CONTENT)

    def _check_bank(self, bank: str | None) -> None:
        if bank is not None and bank not in self._core.stores:
            raise LookupError(bank)

    def _revoke(self, request: Request) -> Response:
        target = Target.model_validate_json(request.body or b"{}")
        count = sum(store.revoke_psu(target.psu) for store in self._stores(target.bank))
        return json_response(HTTPStatus.OK, {"revoked": count})

    def _expire_refresh(self, request: Request) -> Response:
        target = Target.model_validate_json(request.body or b"{}")
        now = self._core.clock.now()
        count = sum(store.expire_refresh_tokens(target.psu, now) for store in self._stores(target.bank))
        return json_response(HTTPStatus.OK, {"expired": count})

    def _expire_access(self, request: Request) -> Response:
        target = Target.model_validate_json(request.body or b"{}")
        now = self._core.clock.now()
        count = sum(store.expire_access_tokens(target.psu, now) for store in self._stores(target.bank))
        return json_response(HTTPStatus.OK, {"expired": count})

    def _clock(self, request: Request) -> Response:
        advance = ClockAdvance.model_validate_json(request.body or b"{}")
        self._core.clock.advance(advance.advance_seconds)
        now = datetime.fromtimestamp(self._core.clock.now(), UTC).isoformat()
        return json_response(HTTPStatus.OK, {"now": now, "clock_offset_seconds": self._core.clock.offset})

    def _reset(self, _request: Request) -> Response:
        self._core.reset()
        return Response(HTTPStatus.NO_CONTENT)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "Invalid request body"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}"[:140]
