"""The sandbox's JSON validates against STET: 1.4.0.47 for ``/v1``, 1.5.0 "close to 1.4.2" for ``/v1.4.2``.

No 1.4.2 schema file exists (see shared/reference/stet/SOURCE.md); 1.5.0.43 is the nearest later version. Where 1.4.2
(as BPCE serves it) differs from 1.5.0, the 1.5.0 schema is patched below, each patch with its reason.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.sandbox.helpers import (
    HUGO,
    MARC,
    MARC_ACCOUNTS,
    MARC_IBANS,
    PAUL,
    SOPHIE,
    TECHN,
    TECHN_ACCOUNT,
    SandboxClient,
    consent_body,
)
from tests.stet_contract import load_extract

pytestmark = pytest.mark.integration

PSU_IP = "192.168.0.1"
BPCE_BOOKING_DATE = r"^\d{4}-\d{2}-\d{2}T00:00:00\+0[12]00$"

# STET 1.4.2.17 GET /end-user-identity (fields from the 1.4.2.17-generated client jgh-/psd2-clj; 1.5.0 moved them
# under "identity" with CR386, so the 1.5.0 HalEndUserIdentity does not apply to 1.4.2).
IDENTITY_1_4_2 = {
    "type": "object",
    "required": ["connectedPsu", "_links"],
    "properties": {
        "connectedPsu": {"type": "string", "maxLength": 70},
        "connectedPsuNamePrefix": {"type": "string", "enum": ["DOCT", "MADM", "MISS", "MIST"]},
        "connectedPsuFirstName": {"type": "string", "maxLength": 70},
        "connectedPsuLastName": {"type": "string", "maxLength": 70},
        "_links": {
            "type": "object",
            "required": ["self"],
            "properties": {
                "self": {"$ref": "#/components/schemas/GenericLink"},
                "parent-list": {"$ref": "#/components/schemas/GenericLink"},
            },
        },
    },
}


def _v1_validator(name: str, *, pending_without_booking_date: bool = False) -> jsonschema.Draft4Validator:
    document = copy.deepcopy(load_extract("1.4.0.47"))
    # The guide's GET /accounts prints its links without href ("self": {}, "balances": {"templated": false}), and /v1
    # serves them so; 1.4.0.47's GenericLink requires href.
    document["definitions"]["GenericLink"]["required"].remove("href")
    if pending_without_booking_date:
        # BPCE sends pending (PDNG) items without bookingDate; 1.4.0.47 made bookingDate required.
        document["definitions"]["Transaction"]["required"].remove("bookingDate")
    return jsonschema.Draft4Validator(
        {"$ref": f"#/definitions/{name}", **document}, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def _v142_validator(name: str) -> jsonschema.Draft4Validator:
    document = copy.deepcopy(load_extract("1.5.0.43"))
    schemas = document["components"]["schemas"]
    # 1.5.0 made amounts numbers; 1.4.2 as BPCE serves it (and 1.4.0) uses strings like "4321.95".
    schemas["AmountType"]["properties"]["amount"] = {"type": "string", "pattern": r"^-?[0-9]{1,13}(\.[0-9]{0,5})?$"}
    # 1.5.0 added the "owners" consent list (CR378); 1.4.2 Access has balances/transactions/flags only.
    schemas["Access"]["required"].remove("owners")
    schemas["HalEndUserIdentity"] = IDENTITY_1_4_2
    # No format checker: 1.5.0 declares every date as date-time while BPCE's 1.4.2 sends date-only valueDate,
    # transactionDate and referenceDate, and bookingDate with an offset without colon (checked separately).
    return jsonschema.Draft4Validator({"$ref": f"#/components/schemas/{name}", **document})


def _errors(validator: jsonschema.Draft4Validator, body: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


@pytest.fixture
def marc(client: SandboxClient) -> Iterator[str]:
    yield client.connect(MARC)["access_token"]


def _bodies(client: SandboxClient, token: str, version: str) -> dict[str, list[Any]]:
    """Every kind of 200 body for Marc: accounts, balances of each account, first/middle/last transaction pages."""
    accounts = client.get("/accounts", token, version=version, psu_ip=PSU_IP).json()
    balances = [
        client.get(f"/accounts/{a}/balances", token, version=version, psu_ip=PSU_IP).json() for a in MARC_ACCOUNTS
    ]
    pages = [
        client.get(f"/accounts/{MARC_ACCOUNTS[0]}/transactions?page={page}", token, version=version, psu_ip=PSU_IP)
        for page in ("1", "2", "last")
    ]
    beneficiaries = client.get("/trusted-beneficiaries", token, version=version, psu_ip=PSU_IP).json()
    return {
        "HalAccounts": [accounts],
        "HalBalances": balances,
        "HalTransactions": [page.json() for page in pages],
        "HalBeneficiaries": [beneficiaries],
    }


def _error_bodies(client: SandboxClient, token: str, version: str) -> list[Any]:
    tech = client.connect(TECHN)["access_token"]
    paul = client.connect(PAUL)["access_token"]
    responses = [
        client.get("/accounts", "bad-token", version=version),  # 401
        client.get(f"/accounts/{TECHN_ACCOUNT}/balances", tech, version=version, psu_ip=PSU_IP),  # 403
        client.get("/accounts", paul, version=version, psu_ip=PSU_IP),  # 404 NAAC
        client.call("PUT", "/consents", token, version=version, body=b"[]"),  # 400
        client.get("/accounts/nope/balances", token, version=version),  # 404
    ]
    for _ in range(5):
        responses.append(client.get("/accounts", token, version=version))  # the 5th is 429
    statuses = [r.status_code for r in responses]
    assert statuses == [401, 403, 404, 400, 404, 200, 200, 200, 200, 429]
    return [r.json() for r in responses if r.status_code >= 400]


# --- /v1: STET 1.4.0.47 ---------------------------------------------------------------------------------------


def test_v1_bodies_validate_against_stet_1_4_0_47(client: SandboxClient, marc: str) -> None:
    for name, bodies in _bodies(client, marc, "v1").items():
        validator = _v1_validator(name, pending_without_booking_date=True)
        for body in bodies:
            assert _errors(validator, body) == [], name


def test_v1_the_only_1_4_0_47_deviation_is_pending_items_without_booking_date(client: SandboxClient, marc: str) -> None:
    page = client.get(f"/accounts/{MARC_ACCOUNTS[0]}/transactions", marc, psu_ip=PSU_IP).json()
    pending = [i for i, t in enumerate(page["transactions"]) if t["status"] == "PDNG"]

    errors = _errors(_v1_validator("HalTransactions"), page)

    assert pending
    assert errors == [f"transactions/{i}: 'bookingDate' is a required property" for i in pending]


def test_v1_cards_and_unconsented_accounts_validate(client: SandboxClient) -> None:
    sophie = client.connect(SOPHIE)["access_token"]
    tech = client.connect(TECHN)["access_token"]
    validator = _v1_validator("HalAccounts")

    for token in (sophie, tech):
        assert _errors(validator, client.get("/accounts", token, psu_ip=PSU_IP).json()) == []


def test_v1_errors_are_stet_error_models(client: SandboxClient, marc: str) -> None:
    validator = _v1_validator("ErrorModel")

    for body in _error_bodies(client, marc, "v1"):
        assert _errors(validator, body) == []
        assert set(body) == {"timestamp", "status", "error", "message", "path"}


def test_the_consent_body_of_the_guide_is_a_stet_access(client: SandboxClient) -> None:
    body = consent_body(MARC_IBANS[:1], MARC_IBANS[:1], psu_identity=True, trusted_beneficiaries=True)

    assert _errors(_v1_validator("Access"), body) == []
    assert _errors(_v142_validator("Access"), body) == []


# --- /v1.4.2: STET 1.5.0 patched to 1.4.2 ---------------------------------------------------------------------


def test_v1_4_2_bodies_validate_against_stet_1_5_0_patched_to_1_4_2(client: SandboxClient, marc: str) -> None:
    for name, bodies in _bodies(client, marc, "v1.4.2").items():
        validator = _v142_validator(name)
        for body in bodies:
            assert _errors(validator, body) == [], name


def test_v1_4_2_identity_cards_and_other_banks_validate(client: SandboxClient, marc: str) -> None:
    sophie = client.connect(SOPHIE)["access_token"]
    hugo = client.connect(HUGO, bank="17515")["access_token"]

    identity = client.get("/end-user-identity", marc, version="v1.4.2", psu_ip=PSU_IP).json()
    cards = client.get("/accounts", sophie, version="v1.4.2", psu_ip=PSU_IP).json()
    caisse = client.get("/accounts", hugo, bank="17515", version="v1.4.2", psu_ip=PSU_IP).json()
    caisse_page = client.get(
        caisse["accounts"][0]["_links"]["transactions"]["href"], hugo, bank="17515", psu_ip=PSU_IP
    ).json()

    assert _errors(_v142_validator("HalEndUserIdentity"), identity) == []
    assert _errors(_v142_validator("HalAccounts"), cards) == []
    assert _errors(_v142_validator("HalAccounts"), caisse) == []
    assert _errors(_v142_validator("HalTransactions"), caisse_page) == []


def test_v1_4_2_booking_dates_use_the_bpce_form(client: SandboxClient, marc: str) -> None:
    page = client.get(f"/accounts/{MARC_ACCOUNTS[0]}/transactions", marc, version="v1.4.2", psu_ip=PSU_IP).json()
    validator = jsonschema.Draft4Validator(
        {"type": "object", "properties": {"bookingDate": {"pattern": BPCE_BOOKING_DATE}}}
    )

    for transaction in page["transactions"]:
        assert _errors(validator, transaction) == []
        assert ("bookingDate" in transaction) != ("expectedBookingDate" in transaction)


def test_v1_4_2_errors_are_stet_error_models(client: SandboxClient, marc: str) -> None:
    validator = _v142_validator("ErrorModel")

    for body in _error_bodies(client, marc, "v1.4.2"):
        assert _errors(validator, body) == []
