"""The return_url allowlist: parsed, normalised, exact origin, prefix on a segment boundary."""

from __future__ import annotations

import pytest

from aisp.return_urls import append_query, is_allowed, parse_allowlist, parse_allowlist_entry

ALLOWLIST = parse_allowlist(
    [
        "https://app.example.com/connections/",
        "https://APP.example.com:443/mobile",
        "com.example.fintech:/oauth",
        "fintechapp://connect",
        "http://127.0.0.1:5173/",
    ]
)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/connections/",
        "https://app.example.com/connections/done",
        "https://app.example.com/connections/done?screen=banks&x=1",
        "https://App.Example.COM/connections/done",  # host case does not matter
        "https://app.example.com:443/connections/done",  # default port
        "https://app.example.com/mobile",
        "https://app.example.com/mobile/done",
        "com.example.fintech:/oauth/done",
        "COM.EXAMPLE.FINTECH:/oauth",
        "fintechapp://connect/done",
        "http://127.0.0.1:5173/any/page",  # loopback development page, explicitly listed
    ],
)
def test_allowed(url):
    assert is_allowed(url, ALLOWLIST)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com.evil.com/connections/done",  # suffix domain
        "https://evil.com/https://app.example.com/connections/",
        "https://app.example.com@evil.com/connections/",  # userinfo
        "https://user:pass@app.example.com/connections/",
        "https://app.example.com/connectionsX/done",  # not on a segment boundary
        "https://app.example.com/mobile-evil",
        "https://app.example.com/connections/../admin",  # dot segments
        "https://app.example.com/connections/%2e%2e/admin",
        "https://app.example.com/connections/%2E%2E%2Fadmin",
        "https://app.example.com/connections\\..\\admin",
        "https://app.example.com\\@evil.com/connections/",
        "http://app.example.com/connections/",  # plain http
        "https://app.example.com:8443/connections/",  # other port
        "https://app.example.com/connections/#fragment",
        "https://app.example.com/connections/ done",
        "https://app.example.com/connections/\ndone",
        "https://app.example.com/connections/é",
        "javascript:alert(1)//app.example.com/connections/",
        "data:text/html,https://app.example.com/connections/",
        "//app.example.com/connections/",  # scheme-relative
        "/connections/done",
        "com.example.fintech:/oauthx",
        "com.example.fintech.evil:/oauth",
        "otherapp://connect/done",
        "http://127.0.0.1:5174/",
        "https://app.example.com/connections/" + "a" * 2100,
        "",
    ],
)
def test_refused(url):
    assert not is_allowed(url, ALLOWLIST)


@pytest.mark.parametrize(
    "entry",
    [
        "http://app.example.com/",  # http only towards loopback
        "https://app.example.com/?next=1",
        "https://app.example.com/#x",
        "https://user@app.example.com/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "https:///nohost",
        "not a url",
    ],
)
def test_bad_allowlist_entries_are_refused(entry):
    with pytest.raises(ValueError, match=r"."):
        parse_allowlist_entry(entry)


def test_append_query_replaces_our_parameters_and_keeps_the_apps():
    url = "https://app.example.com/connections/done?screen=banks&status=connected&error=x"

    result = append_query(url, {"status": "error", "error": "access_denied"})

    assert result == "https://app.example.com/connections/done?screen=banks&status=error&error=access_denied"
