"""The BPCE institution registry."""

from __future__ import annotations

import json

import pytest

from aisp.banks import Network, authorize_base_url, bank_base_url, get_registry, load_registry
from aisp.errors import ConfigurationError, NotFoundError
from aisp.settings import BankSettings, parse_settings


def _settings(**environ: str) -> BankSettings:
    return parse_settings(BankSettings, {"BANK_CREDENTIALS_SECRET_NAME": "s", **environ})


def test_registry_holds_the_seed_sandbox_banks():
    registry = get_registry()
    seed = [bank for bank in registry.banks if bank.bank_code == "13807"]
    assert [(b.name, b.short_name) for b in seed] == [("B.P Grand Ouest", "BPGO"), ("CMM Grand Ouest", "CMMGO")]
    assert all(b.api_prefix == "/stet/psd2/v1" and b.sandbox for b in seed)
    assert registry.get("13807").short_name == "BPGO"
    assert "13807" in registry


def test_registry_covers_both_networks_with_their_documented_capabilities():
    registry = get_registry()
    caisses = [b for b in registry.banks if b.network is Network.CAISSE_EPARGNE]
    populaires = [b for b in registry.banks if b.network is Network.BANQUE_POPULAIRE and not b.sandbox]
    assert caisses and populaires
    # 89C3 limits: no identity on Caisse d'Epargne, no paging (500 cap); Banque Populaire pages by 100.
    assert all(not b.capabilities.identity and b.capabilities.page_size is None for b in caisses)
    assert all(b.capabilities.identity and b.capabilities.page_size == 100 for b in populaires)
    assert {b.api_prefix for b in registry.banks} == {"/stet/psd2/v1", "/stet/psd2/v1.4.2"}


def test_unknown_bank_code_is_not_found():
    with pytest.raises(NotFoundError) as caught:
        get_registry().get("99999")
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
    bank = get_registry().get("13807")
    settings = _settings(**environ)
    assert bank_base_url(bank, settings) == api
    assert authorize_base_url(bank, settings) == (authorize or api)


def _write(tmp_path, banks):
    path = tmp_path / "banks.json"
    path.write_text(json.dumps({"about": "test", "banks": banks}), encoding="utf-8")
    return path


def _entry(**overrides):
    entry = {
        "bank_code": "13807",
        "name": "B.P Grand Ouest",
        "short_name": "BPGO",
        "network": "banque_populaire",
        "stet_version": "1.4.0.47",
        "api_prefix": "/stet/psd2/v1",
        "capabilities": {
            "identity": True,
            "trusted_beneficiaries": False,
            "page_size": 100,
            "history_days": 90,
            "token_revocation": True,
            "refresh_token_days": 90,
        },
    }
    entry.update(overrides)
    return entry


def test_invalid_registry_entry_is_named(tmp_path):
    path = _write(tmp_path, [_entry(), _entry(bank_code="1380", short_name="X1")])
    with pytest.raises(ConfigurationError, match=r"banks\.1\.bank_code"):
        load_registry(path)


def test_brands_sharing_a_code_must_agree(tmp_path):
    path = _write(tmp_path, [_entry(), _entry(short_name="CMMGO", api_prefix="/stet/psd2/v1.4.2")])
    with pytest.raises(ConfigurationError, match="disagree") as caught:
        load_registry(path)
    assert caught.value.details["short_names"] == ["BPGO", "CMMGO"]


def test_duplicate_short_name_and_unreadable_file(tmp_path):
    with pytest.raises(ConfigurationError, match="short name twice"):
        load_registry(_write(tmp_path, [_entry(), _entry()]))
    with pytest.raises(ConfigurationError, match="unreadable"):
        load_registry(tmp_path / "missing.json")
