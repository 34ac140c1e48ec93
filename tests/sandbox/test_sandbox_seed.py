"""The offline sandbox serves the 89C3 guide's sample payloads exactly, where the guide shows them.

The guide's GET /accounts bodies are dated 2019-09-04 (VALU "today", CLBD the day before); with the sandbox clock
moved to that day, the sandbox's /v1 bodies are the guide's, member for member and in the guide's order (its
``_links`` without ``href`` included). The guide's consent body is accepted as printed (a space before the IBAN), and
its token response has the guide's members in the guide's order.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.sandbox.helpers import MARC, TECHN, SandboxClient
from tests.seed import repaired, seed_json

pytestmark = pytest.mark.integration

MAX_STEP_SECONDS = 400 * 86_400  # the admin API moves the clock at most this far per call
SEED_DAY = datetime(2019, 9, 4, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
# The guide's second request id, as printed (with its space).
SEED_REQUEST_ID = "id-1234567890111121 2"


def _back_to_the_seeds_day(client: SandboxClient) -> None:
    remaining = SEED_DAY.timestamp() - time.time()
    while remaining:
        step = max(remaining, -MAX_STEP_SECONDS)
        client.advance_clock(step)
        remaining -= step


def _same_json_text(served: bytes, seed: object) -> None:
    # Same members, same values and same order: the guide's text, modulo white space
    assert json.loads(served) == seed
    assert json.dumps(json.loads(served), ensure_ascii=False) == json.dumps(seed, ensure_ascii=False)


@pytest.mark.parametrize(("persona", "payload"), [(TECHN, "accounts-tech-n-co"), (MARC, "accounts-marc")])
def test_get_accounts_on_v1_is_the_guides_body(client: SandboxClient, persona: str, payload: str) -> None:
    # Given the sandbox on the guide's day, and the persona connected
    _back_to_the_seeds_day(client)
    access = client.connect(persona)["access_token"]

    # When the TPP lists the accounts on the guide's /stet/psd2/v1
    response = client.get("/accounts", access, psu_ip="192.168.0.1")

    # Then the body is the guide's (Tech-N Co before consent; Marc with his consent)
    assert response.status_code == 200
    _same_json_text(response.content, seed_json(payload))


def test_the_guides_consent_body_is_accepted_as_printed(client: SandboxClient) -> None:
    # Given Marc connected, and the guide's PUT /consents body (only its non-breaking spaces made JSON white space)
    access = client.connect(MARC)["access_token"]
    body = repaired("consent-body")[0].encode()

    # When it is sent with the guide's request id
    response = client.call(
        "PUT", "/consents", access, body=body, psu_ip="192.168.0.1", headers={"X-Request-ID": SEED_REQUEST_ID}
    )

    # Then "No body but a response code 201 - Created", the request id echoed
    assert (response.status_code, response.content) == (201, b"")
    assert response.headers["X-Request-ID"] == SEED_REQUEST_ID


def test_the_token_response_has_the_guides_members(client: SandboxClient) -> None:
    body = client.connect(MARC)

    seed = seed_json("token-response")
    assert list(body) == list(seed)
    assert {k: body[k] for k in ("token_type", "expires_in", "scope")} == {
        k: seed[k] for k in ("token_type", "expires_in", "scope")
    }
