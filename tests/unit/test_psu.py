"""The PSU context comes from the request as API Gateway gave it: source IP, the app's own headers, nothing made up."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from aisp.api.psu import MAX_HEADER_LENGTH, psu_from_event
from aisp.models.psu import PsuInfo
from aisp.stet import PsuContext


def _event(load_event, **headers):
    event = load_event("accounts/list_accounts.json")
    event["headers"].update(headers)
    return event


def test_every_field_comes_from_the_request(load_event):
    event = _event(
        load_event,
        referer="https://app.example.com/accounts",
        date="Tue, 24 Nov 2026 10:00:00 GMT",
        **{"accept-encoding": "gzip", "accept-charset": "utf-8"},
    )

    psu = psu_from_event(APIGatewayProxyEventV2(event))

    assert psu.as_kwargs() == {
        "ip_address": "203.0.113.10",
        "http_method": "GET",
        "date": "Tue, 24 Nov 2026 10:00:00 GMT",
        "user_agent": "FintechApp/1.0",
        "referer": "https://app.example.com/accounts",
        "accept": "application/json",
        "accept_charset": "utf-8",
        "accept_encoding": "gzip",
        "accept_language": "fr-FR",
    }
    # and they become exactly the STET PSU-* headers
    assert PsuContext(**psu.as_kwargs()).to_headers() == {
        "PSU-IP-Address": "203.0.113.10",
        "PSU-HTTP-Method": "GET",
        "PSU-Date": "Tue, 24 Nov 2026 10:00:00 GMT",
        "PSU-User-Agent": "FintechApp/1.0",
        "PSU-Referer": "https://app.example.com/accounts",
        "PSU-Accept": "application/json",
        "PSU-Accept-Charset": "utf-8",
        "PSU-Accept-Encoding": "gzip",
        "PSU-Accept-Language": "fr-FR",
    }


@pytest.mark.parametrize("value", ["Frühling/1.0", "x" * (MAX_HEADER_LENGTH + 1), "   ", "bad\x00value"])
def test_a_header_that_cannot_travel_honestly_is_left_out_not_altered(load_event, value):
    psu = psu_from_event(APIGatewayProxyEventV2(_event(load_event, **{"user-agent": value})))

    assert psu.user_agent is None and psu.ip_address == "203.0.113.10"


@pytest.mark.parametrize("source_ip", ["", "not-an-ip", None])
def test_without_a_source_ip_there_is_no_psu_context(load_event, source_ip):
    event = load_event("accounts/list_accounts.json")
    event["requestContext"]["http"]["sourceIp"] = source_ip

    assert psu_from_event(APIGatewayProxyEventV2(event)) is None


def test_ipv6_is_kept(load_event):
    event = load_event("accounts/list_accounts.json")
    event["requestContext"]["http"]["sourceIp"] = "2001:db8::1"

    assert psu_from_event(APIGatewayProxyEventV2(event)).ip_address == "2001:db8::1"


def test_every_psu_info_field_is_a_psu_context_field_of_the_same_type():
    # PsuInfo (aisp.models, importable without the bank client) mirrors part of aisp.stet.PsuContext: a field
    # renamed on one side only would make as_kwargs() fail at the first bank call, so the two are held together here.
    context_fields = {field.name: field for field in dataclasses.fields(PsuContext)}
    info_types = typing.get_type_hints(PsuInfo)
    context_types = typing.get_type_hints(PsuContext)
    assert set(PsuInfo._fields) <= set(context_fields)
    for name in PsuInfo._fields:
        # the context may accept more (e.g. a datetime for date), never less
        assert set(typing.get_args(info_types[name]) or (info_types[name],)) <= set(
            typing.get_args(context_types[name]) or (context_types[name],)
        ), name
    # And a full PsuInfo builds a PsuContext
    info = PsuInfo(ip_address="203.0.113.7", **{name: "x" for name in PsuInfo._fields if name != "ip_address"})
    assert PsuContext(**info.as_kwargs()).ip_address == "203.0.113.7"
