"""The establishment registry: every entry sourced, resolved per environment, and a non-BPCE STET bank describable."""

from __future__ import annotations

import json

import pytest

from aisp import wiring
from aisp.banks import Network, SignatureMode, authorize_base_url, bank_base_url, load_registry
from aisp.banks.registry import REGISTRY_FILE
from aisp.errors import ConfigurationError, NotFoundError
from aisp.settings import BankSettings, parse_settings
from aisp.stet import build_authorization_url


def _settings(**environ: str) -> BankSettings:
    return parse_settings(BankSettings, {"BANK_CREDENTIALS_SECRET_NAME": "s", **environ})


LIVE = load_registry(environment="live")
SANDBOX = load_registry(environment="sandbox")
LOCAL = load_registry(environment="local")


def test_the_seeds_13807_is_stet_1_4_0_on_v1_in_the_sandbox_and_1_4_2_live():
    seed = [bank for bank in SANDBOX.banks if bank.bank_code == "13807"]
    assert [(b.name, b.short_name) for b in seed] == [("B.P Grand Ouest", "BPGO"), ("CMM Grand Ouest", "CMMGO")]
    assert all((b.api_prefix, b.stet_version, b.sandbox) == ("/stet/psd2/v1", "1.4.0.47", True) for b in seed)
    live = LIVE.get("13807")
    assert (live.api_prefix, live.stet_version) == ("/stet/psd2/v1.4.2", "1.4.2.17")
    assert "13807" in SANDBOX and SANDBOX.get("13807").short_name == "BPGO"


def test_the_seeds_feature_points_are_followed_at_13807():
    # The seed: trusted beneficiaries "will not be available", /endUserIdentity only "with STET v1.4.2.17". The
    # registry follows it for beneficiaries everywhere BPCE is; the identity stays on, served from the connectedPsu
    # that the seed's own GET /accounts carries (tests/unit/test_accounts_logic: identity from connectedPsu).
    for registry in (SANDBOX, LIVE):
        assert registry.get("13807").capabilities.trusted_beneficiaries is False
        assert registry.get("13807").capabilities.identity is True
    # The offline sandbox alone serves the STET endpoint, so the route runs end to end there.
    assert LOCAL.get("13807").capabilities.trusted_beneficiaries is True
    assert "offline sandbox" in (LOCAL.get("13807").note or "")


def test_the_environment_comes_from_bank_environment(gateway_env, monkeypatch):

    assert wiring.registry().get("13807").api_prefix == "/stet/psd2/v1"  # the tests' BANK_ENVIRONMENT=sandbox
    monkeypatch.setenv("BANK_ENVIRONMENT", "live")
    wiring.reset()
    assert wiring.registry().get("13807").api_prefix == "/stet/psd2/v1.4.2"


def test_every_establishment_89c3_serves_is_listed_with_its_sources():
    codes = {bank.bank_code for bank in LIVE.banks}
    # Yolt's 89C3 live hosts: 13 Banque Populaire codes (Banque de Savoie included) and 15 Caisses d'Epargne
    banque_populaire = {"10807", "16807", "10207", "18707", "13507", "16607", "10907", "14707", "17807", "13807"}
    banque_populaire |= {"14607", "10548"}
    caisses = {"11315", "11425", "12135", "14445", "13135", "13335", "13485", "13825", "14265", "14505", "17515"}
    caisses |= {"18315", "18715", "15135", "16275"}
    assert banque_populaire | caisses | {"12579", "40978", "42559", "30258"} <= codes
    assert all(bank.sources for bank in LIVE.banks)
    raw = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    assert all(raw["sources"][key] for entry in raw["banks"] for key in entry["sources"])


def test_capabilities_follow_the_89c3_limits_pages():
    caisses = [b for b in LIVE.banks if b.network is Network.CAISSE_EPARGNE]
    populaires = [b for b in LIVE.banks if b.network is Network.BANQUE_POPULAIRE]
    # Caisse d'Epargne: no identity, no beneficiaries, one capped list without paging
    assert all(not b.capabilities.identity and b.capabilities.page_size is None for b in caisses)
    # Banque Populaire: identity, 100 a page; no BPCE establishment lists trusted beneficiaries
    assert all(b.capabilities.identity and b.capabilities.page_size == 100 for b in populaires)
    assert not any(b.capabilities.trusted_beneficiaries for b in LIVE.banks)
    assert LIVE.get("10548").api_prefix == "/stet/psd2/v1.6.2"  # Banque de Savoie's STET 1.6.2 product
    assert {b.api_prefix for b in LIVE.banks} == {"/stet/psd2/v1.4.2", "/stet/psd2/v1.6.2"}
    assert all(b.pkce and b.response_signature.mode is SignatureMode.LOG for b in LIVE.banks)


def test_unknown_bank_code_is_not_found():
    with pytest.raises(NotFoundError) as caught:
        LIVE.get("99999")
    assert caught.value.details == {"bank_code": "99999"}


@pytest.mark.parametrize(
    ("environ", "api", "authorize"),
    [
        ({"BANK_ENVIRONMENT": "sandbox"}, "https://www.13807.sandbox.api.89c3.com", None),
        ({"BANK_ENVIRONMENT": "live"}, "https://www.13807.live.api.89c3.com", None),
        (
            {
                "BANK_ENVIRONMENT": "local",
                "BANK_BASE_URL_TEMPLATE": "https://127.0.0.1:8443/{bank_code}",
                "BANK_AUTHORIZE_URL_TEMPLATE": "http://127.0.0.1:8080/{bank_code}",
            },
            "https://127.0.0.1:8443/13807",
            "http://127.0.0.1:8080/13807",
        ),
    ],
)
def test_base_urls_per_environment(environ, api, authorize):
    bank = LIVE.get("13807")
    settings = _settings(**environ)
    assert bank_base_url(bank, settings) == api
    assert authorize_base_url(bank, settings) == (authorize or api)


# ----------------------------------------------------------------------------------------------------------------
# Files written by the tests
# ----------------------------------------------------------------------------------------------------------------

CAPABILITIES = {
    "identity": True,
    "trusted_beneficiaries": False,
    "page_size": 100,
    "history_days": 90,
    "token_revocation": True,
    "refresh_token_days": 90,
}


def _write(tmp_path, banks, profiles=None):
    document = {
        "about": "test",
        "sources": {"test": "this test"},
        "profiles": profiles
        or {"p": {"stet_version": "1.4.0.47", "api_prefix": "/stet/psd2/v1", "capabilities": CAPABILITIES}},
        "banks": banks,
    }
    path = tmp_path / "banks.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _entry(**overrides):
    entry = {
        "bank_code": "13807",
        "name": "B.P Grand Ouest",
        "short_name": "BPGO",
        "network": "banque_populaire",
        "environments": {"live": "p"},
        "sources": ["test"],
    }
    entry.update(overrides)
    return entry


def test_a_stet_bank_outside_bpce_with_its_own_hosts_and_paths_can_be_described(tmp_path):
    # Given an entry for a STET 1.5 bank that is not on 89C3: its own hosts, API base path and OAuth path
    profiles = {
        "other-1.5": {
            "stet_version": "1.5.0",
            "api_prefix": "/psd2/aisp/v1.5",
            "date_format": "date",
            "capabilities": {**CAPABILITIES, "trusted_beneficiaries": True, "pkce": False},
            "response_signature": {"mode": "enforce", "certificates": ["-----BEGIN CERTIFICATE-----\n..."]},
        }
    }
    entry = _entry(
        bank_code="30004",
        name="Banque Exemple",
        short_name="BEX",
        network="other",
        environments={"live": "other-1.5"},
        hosts={"sandbox": "https://sandbox.api.banque-exemple.fr", "live": "https://api.banque-exemple.fr/openbanking"},
        oauth_path="/oauth2",
    )

    # When resolved
    bank = load_registry(_write(tmp_path, [entry], profiles), environment="live").get("30004")

    # Then every call goes where the entry says
    assert bank_base_url(bank, _settings(BANK_ENVIRONMENT="live")) == "https://api.banque-exemple.fr/openbanking"
    assert bank_base_url(bank, _settings(BANK_ENVIRONMENT="sandbox")) == "https://sandbox.api.banque-exemple.fr"
    url = build_authorization_url(
        "https://api.banque-exemple.fr/openbanking",
        client_id="c",
        redirect_uri="https://r.example/cb",
        state="s",
        oauth_path=bank.oauth_path,
    )
    assert url.startswith("https://api.banque-exemple.fr/openbanking/oauth2/authorize?")
    assert (bank.api_prefix, bank.stet_version, bank.date_format) == ("/psd2/aisp/v1.5", "1.5.0", "date")
    assert not bank.pkce and bank.capabilities.trusted_beneficiaries
    assert bank.response_signature.mode is SignatureMode.ENFORCE


def test_an_environment_without_its_own_profile_falls_back(tmp_path):
    profiles = {
        "p": {"stet_version": "1.4.0.47", "api_prefix": "/stet/psd2/v1", "capabilities": CAPABILITIES},
        "q": {"stet_version": "1.4.2.17", "api_prefix": "/stet/psd2/v1.4.2", "capabilities": CAPABILITIES},
    }
    entry = _entry(environments={"live": "q", "sandbox": {"profile": "p", "capabilities": {"page_size": None}}})
    path = _write(tmp_path, [entry], profiles)

    live, sandbox, local = (load_registry(path, environment=env).get("13807") for env in ("live", "sandbox", "local"))

    assert live.api_prefix == "/stet/psd2/v1.4.2" and live.sandbox
    assert (sandbox.api_prefix, sandbox.capabilities.page_size) == ("/stet/psd2/v1", None)
    assert local == sandbox.model_copy(update={"environment": "local"})


def test_invalid_registry_entry_is_named(tmp_path):
    path = _write(tmp_path, [_entry(), _entry(bank_code="1380", short_name="X1")])
    with pytest.raises(ConfigurationError, match=r"banks\.1\.bank_code"):
        load_registry(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(sources=["nowhere"]), "unknown source"),
        (_entry(environments={"live": "missing"}), "unknown profile"),
        (_entry(environments={"sandbox": "p"}), "must name a live profile"),
        (_entry(sources=[]), r"banks\.0\.sources"),
    ],
)
def test_entries_name_their_sources_and_existing_profiles(tmp_path, entry, message):
    with pytest.raises(ConfigurationError, match=message):
        load_registry(_write(tmp_path, [entry]))


def test_brands_sharing_a_code_must_agree(tmp_path):
    profiles = {
        "p": {"stet_version": "1.4.0.47", "api_prefix": "/stet/psd2/v1", "capabilities": CAPABILITIES},
        "q": {"stet_version": "1.4.2.17", "api_prefix": "/stet/psd2/v1.4.2", "capabilities": CAPABILITIES},
    }
    path = _write(tmp_path, [_entry(), _entry(short_name="CMMGO", environments={"live": "q"})], profiles)
    with pytest.raises(ConfigurationError, match="disagree") as caught:
        load_registry(path)
    assert caught.value.details["short_names"] == ["BPGO", "CMMGO"]


def test_duplicate_short_name_and_unreadable_file(tmp_path):
    with pytest.raises(ConfigurationError, match="short name twice"):
        load_registry(_write(tmp_path, [_entry(), _entry()]))
    with pytest.raises(ConfigurationError, match="unreadable"):
        load_registry(tmp_path / "missing.json")
