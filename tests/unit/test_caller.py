"""Two kinds of caller, never confused (``aisp.api.auth``): the user's app (the ``sub``, present: PSU context from the
request), the fintech's backend (scope ``aisp/unattended``, the user in ``Aisp-User``, no PSU context), and the
optional attended proxy (scope ``aisp/attended-proxy`` forwarding ``PSU-IP-Address``, only when trusted)."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from aisp import errors
from aisp.api.auth import CallerKind, current_caller, current_user
from aisp.models.psu import PsuInfo
from tests.conftest import EVENTS_DIR


def _event(name="accounts/get_balances.json", *, scopes=None, headers=None, drop=()):
    raw = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    jwt = raw["requestContext"]["authorizer"]["jwt"]
    if scopes is not None:
        jwt["scopes"] = scopes
        jwt["claims"]["scope"] = " ".join(scopes)
    raw["headers"] = {k: v for k, v in {**raw["headers"], **(headers or {})}.items() if k not in drop}
    return APIGatewayProxyEventV2(raw)


@pytest.fixture(autouse=True)
def _settings():
    from aisp import wiring

    wiring.reset()
    yield
    wiring.reset()


def test_the_users_app_is_the_sub_present_with_its_psu_context():
    caller = current_caller(_event())

    assert (caller.user_id, caller.kind, caller.attended) == ("user-marc", CallerKind.USER, True)
    assert caller.psu is not None and caller.psu.ip_address == "203.0.113.10"
    assert current_user(_event()) == "user-marc"


def test_the_backend_acts_for_the_user_it_names_and_sends_no_psu_context():
    caller = current_caller(_event("accounts/get_balances_unattended.json"))

    assert (caller.user_id, caller.kind, caller.psu, caller.attended) == (
        "user-marc",
        CallerKind.BACKEND,
        None,
        False,
    )


def test_the_scope_claim_alone_makes_a_server_token():
    # API Gateway parses scopes from the claim; a token whose scopes list is empty still has its claim.
    event = _event(headers={"aisp-user": "user-marc"})
    event["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] = "openid aisp/unattended"

    assert current_caller(event).kind is CallerKind.BACKEND


@pytest.mark.parametrize(
    ("headers", "field", "message"),
    [
        ({}, "Aisp-User", "must name the user"),
        ({"aisp-user": ""}, "Aisp-User", "must be a user id"),
        ({"aisp-user": " user-marc"}, "Aisp-User", "must be a user id"),
        ({"aisp-user": "x" * 256}, "Aisp-User", "must be a user id"),
        ({"aisp-user": "user\x00marc"}, "Aisp-User", "must be a user id"),
        ({"aisp-user": "user-marc", "psu-ip-address": "203.0.113.10"}, "PSU-IP-Address", "attended-proxy"),
    ],
)
def test_a_server_token_without_a_valid_user_is_refused_naming_the_header(headers, field, message):
    event = _event(
        scopes=["aisp/unattended"], headers=headers, drop=("aisp-user",) if "aisp-user" not in headers else ()
    )

    with pytest.raises(errors.InvalidRequestError) as refused:
        current_caller(event)

    assert refused.value.details == {"field": field}
    assert message in refused.value.message
    assert "user-marc" not in refused.value.message and "203.0.113.10" not in refused.value.message


def test_a_user_token_cannot_act_for_another_user():
    for read in (current_caller, current_user):
        with pytest.raises(errors.InvalidRequestError) as refused:
            read(_event(headers={"aisp-user": "user-alice"}))
        assert refused.value.details == {"field": "Aisp-User"}


@pytest.mark.parametrize("scopes", [["aisp/unattended"], ["aisp/attended-proxy"], ["openid", "aisp/unattended"]])
def test_user_only_routes_refuse_a_server_token(scopes):
    with pytest.raises(errors.UserTokenRequiredError):
        current_user(_event(scopes=scopes, headers={"aisp-user": "user-marc"}))


def test_the_scope_names_come_from_the_deployment(monkeypatch):
    monkeypatch.setenv("UNATTENDED_SCOPE", "https://api.fintech.example/batch")

    assert current_caller(_event(scopes=["aisp/unattended"])).kind is CallerKind.USER
    event = _event(scopes=["https://api.fintech.example/batch"], headers={"aisp-user": "user-marc"})
    assert current_caller(event).kind is CallerKind.BACKEND


def test_a_forwarded_address_is_refused_unless_the_deployment_trusts_it():
    event = _event(scopes=["aisp/attended-proxy"], headers={"aisp-user": "user-marc", "psu-ip-address": "192.0.2.44"})

    with pytest.raises(errors.UserTokenRequiredError):
        current_caller(event)


def test_a_trusted_proxy_forwards_the_present_users_address(monkeypatch):
    monkeypatch.setenv("TRUST_FORWARDED_PSU_IP", "true")
    event = _event(
        scopes=["aisp/attended-proxy"], headers={"aisp-user": "user-marc", "psu-ip-address": " 2001:db8::7 "}
    )

    caller = current_caller(event)

    assert (caller.user_id, caller.kind) == ("user-marc", CallerKind.PROXY)
    # Only the address the backend vouches for: its own User-Agent or Accept are not the user's
    assert caller.psu == PsuInfo(ip_address="2001:db8::7", http_method="GET")


@pytest.mark.parametrize(
    "forwarded", [None, "", "203.0.113.300", "localhost", "203.0.113.10, 198.51.100.7", "fe80::1%eth0", "::1%a\x01b"]
)
def test_a_trusted_proxy_must_forward_one_valid_address(monkeypatch, forwarded):
    monkeypatch.setenv("TRUST_FORWARDED_PSU_IP", "true")
    headers = {"aisp-user": "user-marc"} | ({} if forwarded is None else {"psu-ip-address": forwarded})

    with pytest.raises(errors.InvalidRequestError) as refused:
        current_caller(_event(scopes=["aisp/attended-proxy"], headers=headers))

    assert refused.value.details == {"field": "PSU-IP-Address"}
