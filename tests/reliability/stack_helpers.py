"""Helpers of the reliability suite's HTTP tests (bad input, isolation, log redaction) against the local stack.

Everything goes through the real API path: the template's HTTP API on a free port, its JWT authorizer (the local
adapter's, ``local/jwt.py``), the functions in-process, moto and the offline sandbox over HTTPS + mTLS. The e2e
journey's own steps (``tests/e2e/test_journey.py``) connect the users.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from local.stack import RunningStack, start_stack
from tests.e2e.test_journey import TIMEOUT, App, back_at_the_app, complete, log_in_at_bank
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS, MARC_IBANS

__all__ = [
    "BANK",
    "DOCS",
    "LEA",
    "LEA_ACCOUNTS",
    "LEA_IBANS",
    "MARC",
    "MARC_ACCOUNTS",
    "MARC_IBANS",
    "PROBLEM",
    "SECOND_BANK",
    "SOPHIE",
    "SOPHIE_ACCOUNT",
    "SOPHIE_IBAN",
    "App",
    "Connected",
    "connect",
    "consent_to_everything",
    "documented_routes",
    "local_stack",
    "problem",
    "raw_session",
    "send",
]

BANK = "13807"
SECOND_BANK = "10207"
SOPHIE = "D0999991I0"
SOPHIE_ACCOUNT = "038-CPT30019654061"
SOPHIE_IBAN = "FR7613807008043001965406128"
LEA = "D1020701I0"
LEA_ACCOUNTS = ("021-CPT04021234501", "021-CPT04021234502")
LEA_IBANS = ("FR7610207002210402123450128", "FR7610207002210402123450225")
PROBLEM = "application/problem+json"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@contextmanager
def local_stack(
    state_dir: Path, *, sandbox_admin: bool | None = None, **parameter_overrides: str
) -> Iterator[RunningStack]:
    """The whole stack on free ports (no refresher timer), stopped on exit."""
    with start_stack(
        api_port=0,
        moto_port=0,
        sandbox_port=0,
        sandbox_screens_port=0,
        state_dir=state_dir,
        sandbox_admin=sandbox_admin,
        parameter_overrides=parameter_overrides or None,
    ) as running:
        yield running


@dataclass(frozen=True)
class Connected:
    """A user connected through the journey: their app, the connection and the bank's redirect to our callback."""

    app: App
    connection_id: str
    callback_url: str


def connect(stack: RunningStack, user: str, *, bank_code: str = BANK, identifier: str = MARC) -> Connected:
    """``user`` connects ``bank_code`` as the sandbox persona ``identifier`` (the e2e journey's steps)."""
    app = App(stack.api_url, user)
    started = app.call(
        "POST", "/v1/connections", json={"bank_code": bank_code, "return_url": f"{stack.api_url}/"}, expect=201
    )
    callback_url = log_in_at_bank(started["authorization_url"], identifier=identifier)
    complete(app, back_at_the_app(stack, callback_url))
    return Connected(app=app, connection_id=started["connection_id"], callback_url=callback_url)


def consent_to_everything(app: App, bank_code: str, ibans: tuple[str, ...]) -> dict[str, Any]:
    """``PUT .../consent`` for every IBAN, identity and beneficiaries; returns the consent in force."""
    body = {"balances": list(ibans), "transactions": list(ibans), "psu_identity": True, "trusted_beneficiaries": True}
    answer: dict[str, Any] = app.call("PUT", f"/v1/connections/{bank_code}/consent", json=body)
    return answer


def documented_routes() -> set[str]:
    """Every ``METHOD /path`` of the committed OpenAPI document."""
    document = json.loads(DOCS.read_text(encoding="utf-8"))
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}


def problem(response: requests.Response) -> Mapping[str, Any]:
    """The problem+json body of an error answer (asserting its media type and required members)."""
    assert response.headers.get("content-type", "").startswith(PROBLEM), (response.status_code, response.text)
    assert response.headers.get("x-content-type-options") == "nosniff", response.headers
    assert response.headers.get("cache-control") == "no-store", response.headers
    body: Mapping[str, Any] = response.json()
    assert {"type", "title", "status", "code"} <= set(body), body
    assert body["status"] == response.status_code, body
    return body


def raw_session() -> requests.Session:
    """A client without any default header or proxy (each case sets its own)."""
    session = requests.Session()
    session.trust_env = False
    return session


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request with the suite's timeout."""
    return session.request(method, url, timeout=TIMEOUT, allow_redirects=False, **kwargs)
