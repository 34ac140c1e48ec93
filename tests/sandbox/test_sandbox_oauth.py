"""Login screens, token endpoint and revocation: every rule and every rejection."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.sandbox.helpers import (
    BRUNO,
    CLIENT_ID,
    JULIE,
    LEA,
    MARC,
    OTHER_REDIRECT_URI,
    OTP,
    REDIRECT_URI,
    SandboxClient,
    flow_id,
    issue_client_certificate,
    query_of,
)

pytestmark = pytest.mark.integration


# --- screens -------------------------------------------------------------------------------------------------


def test_refusing_redirects_with_access_denied_and_the_state(client: SandboxClient) -> None:
    flow = flow_id(client.authorize(state="s-refuse").text)
    client.screen(flow, identifier=MARC)
    client.screen(flow, otp=OTP)

    refused = client.screen(flow, decision="refuse")

    assert refused.status_code == 302
    assert refused.headers["Location"].startswith(REDIRECT_URI + "?")
    assert query_of(refused.headers["Location"]) == {"error": "access_denied", "state": "s-refuse"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"client_id": "PSDFR-ACPR-99999"}, "client_id"),
        ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri"),
        ({"redirect_uri": REDIRECT_URI + "/"}, "redirect_uri"),
    ],
)
def test_unknown_client_or_unregistered_redirect_uri_is_an_error_page_not_a_redirect(
    client: SandboxClient, params: dict[str, str], message: str
) -> None:
    page = client.authorize(**params)

    assert page.status_code == 400
    assert "Location" not in page.headers
    assert "id='error'" in page.text
    assert message in page.text


def test_wrong_response_type_or_scope_is_redirected_with_an_oauth_error(client: SandboxClient) -> None:
    wrong_type = client.authorize(response_type="token")
    wrong_scope = client.authorize(scope="pisp")

    assert query_of(wrong_type.headers["Location"]) == {"error": "unsupported_response_type", "state": "state-123"}
    assert query_of(wrong_scope.headers["Location"]) == {"error": "invalid_scope", "state": "state-123"}


def test_the_seed_upper_case_scope_is_accepted(client: SandboxClient) -> None:
    assert client.authorize(scope="AISP").status_code == 200


def test_wrong_identifier_shows_the_screen_again_then_locks_after_three_failures(client: SandboxClient) -> None:
    flow = flow_id(client.authorize().text)

    first = client.screen(flow, identifier="D0000000X0")
    second = client.screen(flow, identifier="nobody")
    third = client.screen(flow, identifier="still-nobody")
    after = client.screen(flow, identifier=MARC)

    assert first.status_code == 200
    assert "name='identifier'" in first.text
    assert "Identifiant inconnu" in first.text
    assert "2 essai(s)" in first.text
    assert "1 essai(s)" in second.text
    assert third.status_code == 403
    assert "bloqué" in third.text
    assert "Location" not in third.headers
    assert after.status_code == 403  # the right identifier no longer helps


def test_wrong_otp_counts_towards_the_same_lock(client: SandboxClient) -> None:
    flow = flow_id(client.authorize().text)
    client.screen(flow, identifier="unknown")
    client.screen(flow, identifier=MARC)

    wrong = client.screen(flow, otp="00000000")
    locked = client.screen(flow, otp="11111111")

    assert "Code de sécurité incorrect" in wrong.text
    assert "name='otp'" in wrong.text
    assert locked.status_code == 403
    assert client.screen(flow, otp=OTP).status_code == 403


def test_the_persona_made_to_fail_sca_never_passes_and_locks(client: SandboxClient) -> None:
    flow = flow_id(client.authorize().text)
    client.screen(flow, identifier=BRUNO)

    answers = [client.screen(flow, otp=OTP).status_code for _ in range(3)]

    assert answers == [200, 200, 403]


def test_the_locked_page_offers_a_way_back_with_access_denied(client: SandboxClient) -> None:
    flow = flow_id(client.authorize(state="s-lock").text)
    for _ in range(3):
        locked = client.screen(flow, identifier="x")

    assert f"href='{REDIRECT_URI}?error=access_denied" in locked.text.replace("&amp;", "&")
    assert "state=s-lock" in locked.text


def test_unknown_or_finished_flow_is_an_error_page(client: SandboxClient) -> None:
    assert client.screen("not-a-flow", identifier=MARC).status_code == 400
    flow = flow_id(client.authorize().text)
    client.screen(flow, identifier=MARC)
    client.screen(flow, otp=OTP)
    client.screen(flow, decision="accept")

    again = client.screen(flow, decision="accept")

    assert again.status_code == 400
    assert "Location" not in again.headers


def test_a_flow_expires_after_fifteen_minutes(client: SandboxClient) -> None:
    flow = flow_id(client.authorize().text)
    client.advance_clock(901)

    assert client.screen(flow, identifier=MARC).status_code == 400


def test_the_https_authorize_path_sends_browsers_to_the_screens_listener(client: SandboxClient) -> None:
    response = client.anonymous.get(
        f"{client.sandbox.api_url('13807')}/stet/psd2/oauth/authorize?client_id={CLIENT_ID}&state=a",
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"{client.authorize_endpoint()}?client_id={CLIENT_ID}&state=a"


def test_the_screens_index_lists_the_banks(client: SandboxClient) -> None:
    index = client.browser.get(client.sandbox.screens_origin + "/", timeout=5)

    assert index.status_code == 200
    assert all(code in index.text for code in ("13807", "10207", "17515"))
    assert "CMM Grand Ouest" in index.text


# --- token endpoint ------------------------------------------------------------------------------------------


def test_a_code_is_single_use_and_its_replay_revokes_the_tokens(client: SandboxClient) -> None:
    code = client.login(MARC)
    tokens = client.exchange(code).json()

    replay = client.exchange(code)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert client.get("/accounts", tokens["access_token"]).status_code == 401
    assert client.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_code_expires_after_five_minutes(client: SandboxClient) -> None:
    code = client.login(MARC)
    client.advance_clock(301)

    response = client.exchange(code)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_redirect_uri_must_equal_the_authorize_one(client: SandboxClient) -> None:
    code = client.login(MARC)

    mismatch = client.exchange(code, redirect_uri=OTHER_REDIRECT_URI)
    missing = client.token(grant_type="authorization_code", code=code)

    assert (mismatch.status_code, mismatch.json()["error"]) == (400, "invalid_grant")
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    assert client.exchange(code).status_code == 200  # a mismatch does not burn the code


def test_a_second_registered_redirect_uri_works_end_to_end(client: SandboxClient) -> None:
    code = client.login(MARC, redirect_uri=OTHER_REDIRECT_URI)

    assert client.exchange(code, redirect_uri=OTHER_REDIRECT_URI).status_code == 200


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT_URI}, 400, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, 400, "invalid_grant"),
        ({"grant_type": "refresh_token"}, 400, "invalid_request"),
        ({"grant_type": "password", "username": "x"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "x", "scope": "aisp"}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "x", "client_id": "PSDFR-ACPR-99999"}, 401, "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": "x", "client_id": ""}, 400, "invalid_request"),
    ],
)
def test_token_errors_follow_rfc_6749(client: SandboxClient, form: dict[str, str], status: int, error: str) -> None:
    response = client.token(**form)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert isinstance(response.json()["error_description"], str)
    assert response.headers["Cache-Control"] == "no-store"


def test_the_token_endpoint_needs_a_client_certificate(client: SandboxClient) -> None:
    response = client.anonymous.post(
        client.token_endpoint(), data={"client_id": CLIENT_ID, "grant_type": "refresh_token"}, timeout=5
    )

    assert response.status_code == 401
    assert set(response.json()) == {"timestamp", "status", "error", "message", "path"}
    assert response.json()["status"] == 401
    assert response.json()["path"] == "/13807/stet/psd2/oauth/token"


def test_a_certificate_of_another_tpp_from_the_same_ca_is_invalid_client(
    client: SandboxClient, certs_dir: Path, tmp_path: Path
) -> None:
    other = issue_client_certificate(certs_dir, tmp_path, "PSDFR-ACPR-99999")
    code = client.login(MARC)

    response = client.api.post(
        client.token_endpoint(),
        data={"client_id": CLIENT_ID, "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        cert=other,
        timeout=5,
    )

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_a_certificate_from_an_unknown_ca_fails_the_tls_handshake(
    client: SandboxClient, certs_dir: Path, tmp_path: Path
) -> None:
    rogue = issue_client_certificate(certs_dir, tmp_path, CLIENT_ID, self_signed=True)

    with pytest.raises(requests.exceptions.SSLError):
        client.api.post(client.token_endpoint(), data={"client_id": CLIENT_ID}, cert=rogue, timeout=5)


def test_refresh_keeps_the_refresh_token_and_revokes_the_previous_access_token(client: SandboxClient) -> None:
    tokens = client.connect(MARC)

    first = client.refresh(tokens["refresh_token"]).json()
    second = client.refresh(tokens["refresh_token"]).json()

    assert first["refresh_token"] == second["refresh_token"] == tokens["refresh_token"]
    assert len({tokens["access_token"], first["access_token"], second["access_token"]}) == 3
    assert client.get("/accounts", tokens["access_token"]).status_code == 401
    assert client.get("/accounts", first["access_token"]).status_code == 401
    assert client.get("/accounts", second["access_token"]).status_code == 200


def test_a_new_authentication_revokes_the_previous_token_pair(client: SandboxClient) -> None:
    old = client.connect(MARC)
    new = client.connect(MARC)

    assert client.get("/accounts", old["access_token"]).status_code == 401
    assert client.refresh(old["refresh_token"]).json()["error"] == "invalid_grant"
    assert client.get("/accounts", new["access_token"]).status_code == 200


def test_access_tokens_expire_after_an_hour_refresh_tokens_after_90_days(client: SandboxClient) -> None:
    tokens = client.connect(MARC)

    client.advance_clock(3601)
    expired = client.get("/accounts", tokens["access_token"])
    refreshed = client.refresh(tokens["refresh_token"])
    client.advance_clock(90 * 86_400)
    too_late = client.refresh(tokens["refresh_token"])

    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert refreshed.status_code == 200
    assert (too_late.status_code, too_late.json()["error"]) == (400, "invalid_grant")


def test_the_persona_who_revoked_access_cannot_refresh(client: SandboxClient) -> None:
    tokens = client.connect(JULIE)

    works = client.get("/accounts", tokens["access_token"])
    refresh = client.refresh(tokens["refresh_token"])

    assert works.status_code == 200
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")
    assert client.get("/accounts", tokens["access_token"]).status_code == 401


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_either_token_revokes_both(client: SandboxClient, which: str) -> None:
    tokens = client.connect(MARC)

    revoked = client.api.post(
        client.token_endpoint(name="revoke"),
        data={"client_id": CLIENT_ID, "token": tokens[which], "token_type_hint": which},
        timeout=5,
    )

    assert revoked.status_code == 200
    assert client.get("/accounts", tokens["access_token"]).status_code == 401
    assert client.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_unknown_token_is_still_200_but_a_missing_token_is_invalid_request(client: SandboxClient) -> None:
    unknown = client.api.post(
        client.token_endpoint(name="revoke"), data={"client_id": CLIENT_ID, "token": "x"}, timeout=5
    )
    missing = client.api.post(client.token_endpoint(name="revoke"), data={"client_id": CLIENT_ID}, timeout=5)

    assert unknown.status_code == 200
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")


def test_each_bank_keeps_its_own_tokens(client: SandboxClient) -> None:
    lea = client.connect(LEA, bank="10207")
    marc = client.connect(MARC)

    assert client.get("/accounts", lea["access_token"], bank="10207").status_code == 200
    assert client.get("/accounts", lea["access_token"], bank="13807").status_code == 401
    assert client.get("/accounts", marc["access_token"], bank="10207").status_code == 401
    assert client.refresh(lea["refresh_token"], bank="13807").json()["error"] == "invalid_grant"
    assert client.refresh(lea["refresh_token"], bank="10207").status_code == 200


def test_an_identifier_of_another_bank_is_unknown_here(client: SandboxClient) -> None:
    flow = flow_id(client.authorize(bank="10207").text)

    page = client.screen(flow, bank="10207", identifier=MARC)

    assert "Identifiant inconnu" in page.text


def test_the_token_endpoint_only_takes_post(client: SandboxClient) -> None:
    response = client.api.get(client.token_endpoint(), timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
