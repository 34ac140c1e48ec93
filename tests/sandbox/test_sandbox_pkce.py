"""PKCE at the sandbox's token authority (RFC 7636): a code bound to its authorize request's challenge."""

from __future__ import annotations

import pytest

from aisp.pkce import code_challenge, new_code_verifier
from tests.sandbox.helpers import MARC, OTP, SandboxClient, flow_id, query_of

pytestmark = pytest.mark.integration


def test_a_challenged_code_is_exchanged_only_with_its_verifier(client: SandboxClient) -> None:
    # Given a code issued for an authorize request with an S256 challenge
    verifier = new_code_verifier()
    code = client.login(MARC, code_challenge=code_challenge(verifier), code_challenge_method="S256")

    # When it is exchanged without a verifier, then with another one, then with its own
    missing = client.exchange(code)
    wrong = client.exchange(code, code_verifier=new_code_verifier())
    right = client.exchange(code, code_verifier=verifier)

    # Then only its own verifier gets tokens (a refusal does not burn the code for its owner)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_grant")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert right.status_code == 200, right.text
    assert right.json()["access_token"]


def test_the_plain_method_and_an_absent_method_compare_the_verifier_itself(client: SandboxClient) -> None:
    verifier = new_code_verifier()
    explicit = client.login(MARC, code_challenge=verifier, code_challenge_method="plain", state="s-plain")
    implicit = client.login(MARC, code_challenge=verifier, state="s-implicit")  # RFC 7636 §4.3: plain by default

    assert client.exchange(explicit, code_verifier=code_challenge(verifier)).json()["error"] == "invalid_grant"
    assert client.exchange(explicit, code_verifier=verifier).status_code == 200
    assert client.exchange(implicit, code_verifier=verifier).status_code == 200


def test_a_verifier_for_a_code_issued_without_challenge_is_refused(client: SandboxClient) -> None:
    # A downgrade: the code was issued without PKCE, the client sends a verifier anyway (RFC 9700 §2.1.1)
    code = client.login(MARC)

    refused = client.exchange(code, code_verifier=new_code_verifier())

    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert client.exchange(code).status_code == 200  # without PKCE, as issued


def test_a_malformed_verifier_is_an_invalid_request(client: SandboxClient) -> None:
    verifier = new_code_verifier()
    code = client.login(MARC, code_challenge=code_challenge(verifier), code_challenge_method="S256")

    short = client.exchange(code, code_verifier="too-short")

    assert (short.status_code, short.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    "params",
    [
        {"code_challenge": "x" * 42, "code_challenge_method": "S256"},  # below RFC 7636's 43 characters
        {"code_challenge": "a" * 43 + "+", "code_challenge_method": "S256"},  # not base64url
        {"code_challenge": "a" * 43, "code_challenge_method": "S512"},  # unknown method
        {"code_challenge_method": "S256"},  # a method without a challenge
    ],
)
def test_an_invalid_challenge_is_redirected_with_invalid_request(client: SandboxClient, params: dict[str, str]) -> None:
    page = client.authorize(state="s-pkce", **params)

    assert page.status_code == 302
    assert query_of(page.headers["Location"]) == {"error": "invalid_request", "state": "s-pkce"}


def test_the_challenge_survives_the_screens_to_the_code(client: SandboxClient) -> None:
    # The challenge is given once, on the first GET; the screens post only the flow id
    verifier = new_code_verifier()
    page = client.authorize(code_challenge=code_challenge(verifier), code_challenge_method="S256")
    flow = flow_id(page.text)
    client.screen(flow, identifier=MARC)
    client.screen(flow, otp=OTP)
    code = query_of(client.screen(flow, decision="accept").headers["Location"])["code"]

    assert client.exchange(code).json()["error"] == "invalid_grant"
    assert client.exchange(code, code_verifier=verifier).status_code == 200
