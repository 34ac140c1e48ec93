"""Fault switches of the admin API: latency, 500/503, timeouts, 429, TMRQ, token revocation, clock, reset."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from sandbox.server import SandboxConfig, start_sandbox
from tests.sandbox.helpers import LEA, MARC, MARC_ACCOUNTS, REDIRECT_URI, SandboxClient

pytestmark = pytest.mark.integration

BALANCES = f"/accounts/{MARC_ACCOUNTS[0]}/balances"
PSU_IP = "192.168.0.1"


def _fault(client: SandboxClient, **rule: object) -> None:
    response = client.admin("POST", "faults", rule)
    assert response.status_code == 201, response.text


def _statuses(client: SandboxClient, token: str, count: int, **kwargs: object) -> list[int]:
    return [client.get(BALANCES, token, psu_ip=PSU_IP, **kwargs).status_code for _ in range(count)]


# --- admin availability --------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [None, "0"])
def test_admin_is_404_unless_enabled(certs_dir: Path, monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv("SANDBOX_ADMIN", raising=False)
    else:
        monkeypatch.setenv("SANDBOX_ADMIN", env)
    config = SandboxConfig(port=0, screens_port=0, certs_dir=certs_dir, redirect_uris=(REDIRECT_URI,))
    with start_sandbox(config) as plain, SandboxClient(plain) as tpp:
        assert tpp.admin("POST", "reset").status_code == 404
        assert tpp.admin("POST", "faults", {"fault": "500"}).status_code == 404
        assert tpp.admin("GET", "state").json()["status"] == 404


def test_sandbox_admin_1_enables_it(certs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_ADMIN", "1")
    config = SandboxConfig(port=0, screens_port=0, certs_dir=certs_dir, redirect_uris=(REDIRECT_URI,))
    with start_sandbox(config) as enabled, SandboxClient(enabled) as tpp:
        assert tpp.admin("POST", "reset").status_code == 204


def test_bad_admin_bodies_are_400(client: SandboxClient) -> None:
    assert client.admin("POST", "faults", {"fault": "418"}).status_code == 400
    assert client.admin("POST", "faults", {"fault": "500", "every": 0}).status_code == 400
    assert client.admin("POST", "faults", {"fault": "500", "bank": "99999"}).status_code == 400
    assert client.admin("POST", "faults", {"fault": "500", "page": ""}).status_code == 400
    assert client.admin("POST", "latency", {"ms": -1}).status_code == 400
    assert client.admin("POST", "clock", {}).json()["message"].startswith("advance_seconds")


# --- failures ------------------------------------------------------------------------------------------------


def test_every_other_call_fails_with_500(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    _fault(client, fault="500", scope="aisp", every=2)

    statuses = _statuses(client, token, 6)
    failing = client.get(BALANCES, token, psu_ip=PSU_IP, headers={"X-Request-ID": "fault-1"})

    assert statuses == [500, 200, 500, 200, 500, 200]
    assert failing.json()["message"] == "INTE"
    assert failing.headers["X-Request-ID"] == "fault-1"


def test_a_seeded_ratio_of_503_is_reproducible(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    _fault(client, fault="503", scope="aisp", ratio=0.5, seed=42)
    first = _statuses(client, token, 20)

    client.admin("DELETE", "faults")
    _fault(client, fault="503", scope="aisp", ratio=0.5, seed=42)
    second = _statuses(client, token, 20)

    assert first == second
    assert set(first) == {200, 503}


def test_times_retires_a_rule(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    _fault(client, fault="503", times=2)

    assert _statuses(client, token, 4) == [503, 503, 200, 200]
    assert client.admin("GET", "state").json()["faults"] == []


def test_a_timeout_hangs_then_drops_the_connection(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    _fault(client, fault="timeout", scope="aisp", hang_seconds=1.5, times=1)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.api.get(client.url(BALANCES), timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert _statuses(client, token, 1) == [200]  # the rule fired once; a new connection is served


def test_a_page_rule_hits_only_that_page_of_a_pagination(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    transactions = f"/accounts/{MARC_ACCOUNTS[0]}/transactions"
    _fault(client, fault="503", scope="aisp", page="2")

    queries = {"none": "", "first": "?page=first", "1": "?page=1", "2": "?page=2", "3": "?page=3"}
    statuses = {page: client.get(transactions + q, token, psu_ip=PSU_IP).status_code for page, q in queries.items()}
    balances = client.get(BALANCES, token, psu_ip=PSU_IP).status_code  # no page parameter: page 1
    refreshed = client.refresh(client.connect(LEA, bank="10207")["refresh_token"], bank="10207").status_code

    assert statuses == {"none": 200, "first": 200, "1": 200, "2": 503, "3": 200}
    assert (balances, refreshed) == (200, 200)
    (rule,) = client.admin("GET", "state").json()["faults"]
    assert (rule["page"], rule["calls"], rule["fired"]) == ("2", 1, 1)


def test_a_path_rule_hits_only_the_calls_about_that_account(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    second = f"/accounts/{MARC_ACCOUNTS[1]}/transactions"
    _fault(client, fault="500", scope="aisp", path=f"{MARC_ACCOUNTS[1]}/transactions", page="2")

    paths = [f"/accounts/{MARC_ACCOUNTS[0]}/transactions?page=2", f"{second}?page=2", second, BALANCES]
    statuses = [client.get(path, token, psu_ip=PSU_IP).status_code for path in paths]

    assert statuses == [200, 500, 200, 200]
    (rule,) = client.admin("GET", "state").json()["faults"]
    assert (rule["path"], rule["calls"], rule["fired"]) == (f"{MARC_ACCOUNTS[1]}/transactions", 1, 1)
    assert client.admin("POST", "faults", {"fault": "500", "path": ""}).status_code == 400


def test_a_slow_page_is_held_then_served_and_the_rule_retires(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    transactions = f"/accounts/{MARC_ACCOUNTS[0]}/transactions"
    _fault(client, fault="slow", scope="aisp", page="2", hang_seconds=0.5, times=2)

    # Held longer than an impatient client waits...
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.api.get(client.url(f"{transactions}?page=2"), timeout=0.2)
    # ...and then answered normally to a patient one
    slow = client.get(f"{transactions}?page=2", token, psu_ip=PSU_IP)

    assert slow.status_code == 200 and slow.json()["transactions"]
    assert client.admin("GET", "state").json()["faults"] == []  # retired after two slow answers


def test_forced_429_carries_retry_after(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    _fault(client, fault="429", retry_after=120, times=1)

    refused = client.get(BALANCES, token, psu_ip=PSU_IP)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "120"
    assert refused.json()["error"] == "Too Many Requests"
    assert refused.json()["message"].startswith("Limite des appels par jour")


def test_forced_403_tmrq(client: SandboxClient) -> None:
    token = client.connect(MARC)["access_token"]
    _fault(client, fault="tmrq", scope="aisp")

    refused = client.get(BALANCES, token, psu_ip=PSU_IP)

    assert (refused.status_code, refused.json()["message"]) == (403, "TMRQ")


def test_faults_are_scoped_by_path_kind_and_bank(client: SandboxClient) -> None:
    marc = client.connect(MARC)
    lea = client.connect(LEA, bank="10207")
    _fault(client, fault="503", scope="token", bank="13807")

    token_13807 = client.refresh(marc["refresh_token"])
    token_10207 = client.refresh(lea["refresh_token"], bank="10207")
    aisp_13807 = client.get(BALANCES, marc["access_token"], psu_ip=PSU_IP)

    assert (token_13807.status_code, token_10207.status_code, aisp_13807.status_code) == (503, 200, 200)


def test_latency_applies_to_the_chosen_scope(client: SandboxClient) -> None:
    tokens = client.connect(MARC)
    assert client.admin("POST", "latency", {"ms": 300, "scope": "aisp", "bank": "13807"}).status_code == 200

    started = time.monotonic()
    assert client.get(BALANCES, tokens["access_token"], psu_ip=PSU_IP).status_code == 200
    slow = time.monotonic() - started
    started = time.monotonic()
    refreshed = client.refresh(tokens["refresh_token"])
    fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.3
    assert refreshed.status_code == 200


def test_the_cli_latency_is_the_default_for_every_call(certs_dir: Path) -> None:
    config = SandboxConfig(
        port=0, screens_port=0, certs_dir=certs_dir, redirect_uris=(REDIRECT_URI,), latency_ms=200, admin=True
    )
    with start_sandbox(config) as slow, SandboxClient(slow) as tpp:
        tokens = tpp.connect(MARC)
        started = time.monotonic()
        tpp.refresh(tokens["refresh_token"])
        with_latency = time.monotonic() - started
        tpp.admin("POST", "latency", {"ms": 0})
        started = time.monotonic()
        tpp.refresh(tokens["refresh_token"])
        without = time.monotonic() - started

    assert with_latency >= 0.2
    assert without < 0.2


# --- tokens, clock, reset ------------------------------------------------------------------------------------


def test_revoke_a_psu_tokens(client: SandboxClient) -> None:
    marc = client.connect(MARC)
    lea = client.connect(LEA, bank="10207")

    assert client.admin("POST", "revoke", {"psu": MARC}).json() == {"revoked": 1}
    assert client.get(BALANCES, marc["access_token"], psu_ip=PSU_IP).status_code == 401
    assert client.refresh(marc["refresh_token"]).json()["error"] == "invalid_grant"
    assert client.refresh(lea["refresh_token"], bank="10207").status_code == 200


def test_expire_refresh_tokens(client: SandboxClient) -> None:
    marc = client.connect(MARC)

    assert client.admin("POST", "expire-refresh-tokens", {"bank": "13807"}).json() == {"expired": 1}
    assert client.get(BALANCES, marc["access_token"], psu_ip=PSU_IP).status_code == 200
    assert client.refresh(marc["refresh_token"]).json()["error"] == "invalid_grant"


def test_advance_the_clock(client: SandboxClient) -> None:
    marc = client.connect(MARC)
    today = client.sandbox.core.clock.today()

    moved = client.admin("POST", "clock", {"advance_seconds": 3 * 86_400}).json()
    state = client.admin("GET", "state").json()

    assert moved["clock_offset_seconds"] == 3 * 86_400
    assert state["clock_offset_seconds"] == 3 * 86_400
    assert (client.sandbox.core.clock.today() - today).days == 3
    assert client.get(BALANCES, marc["access_token"], psu_ip=PSU_IP).status_code == 401


def test_reset_forgets_tokens_faults_consents_and_clock(client: SandboxClient) -> None:
    marc = client.connect(MARC)
    _fault(client, fault="500", scope="token")
    client.advance_clock(60)

    client.reset()

    state = client.admin("GET", "state").json()
    assert state["faults"] == []
    assert state["clock_offset_seconds"] == 0
    assert state["banks"]["13807"]["grants"] == 0
    assert client.refresh(marc["refresh_token"]).json()["error"] == "invalid_grant"


def test_stop_ends_pending_hangs(certs_dir: Path) -> None:
    config = SandboxConfig(port=0, screens_port=0, certs_dir=certs_dir, redirect_uris=(REDIRECT_URI,), admin=True)
    sandbox = start_sandbox(config)
    with SandboxClient(sandbox) as tpp:
        _fault(tpp, fault="timeout", hang_seconds=60)
        with pytest.raises(requests.exceptions.ReadTimeout):
            tpp.api.post(tpp.token_endpoint(), data={}, timeout=0.2)
    started = time.monotonic()
    sandbox.stop()

    assert time.monotonic() - started < 3
