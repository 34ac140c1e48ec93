"""Bad input on a deployment that trusts forwarded addresses (``TrustForwardedPsuIp=true``, issue #14): the backend
relaying a present user's app with the attended-proxy scope must forward that user's address, a valid IP, in
``PSU-IP-Address``; anything else is a 400 naming the header, never a 5xx. Kept apart from test_bad_input.py: its
stack does not trust forwarded addresses (the default), and one stack runs per process at a time. Counted in the
reliability summary as ``bad-input``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pytest

from local.stack import RunningStack
from tests.reliability.stack_helpers import BANK, local_stack, problem, raw_session, send
from tests.reliability.tally import record

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SUITE: Final = "bad-input"
USER: Final = "forwarded-user"  # no connection: a request that passes every caller check ends at 404
PSU_IP: Final = "PSU-IP-Address"
QUOTA: Final = f"/v1/connections/{BANK}/quota"
ACCOUNTS: Final = f"/v1/connections/{BANK}/accounts"


@pytest.fixture(scope="module")
def stack(state_dir) -> Iterator[RunningStack]:
    with local_stack(state_dir, TrustForwardedPsuIp="true") as running:
        yield running


def call(stack: RunningStack, token: str, headers: dict[str, str], path: str = ACCOUNTS):
    response = send(raw_session(), "GET", stack.api_url + path, headers={"Authorization": f"Bearer {token}", **headers})
    record(SUITE, cases=1, server_errors=int(response.status_code >= 500))  # noqa: PLR2004
    assert token not in response.text
    return response


@pytest.mark.parametrize(
    "address",
    [
        None,
        "",
        "not-an-ip",
        "999.1.1.1",
        "203.0.113.7, 10.0.0.1",
        "203.0.113.7:443",
        "fe80::1%eth0x",
        "::ffff:999.0.0.1",
    ],
)
def test_a_forwarded_address_that_is_not_an_ip_is_refused_naming_the_header(stack, address):
    # Given the backend's attended-proxy token on a deployment that trusts it
    token = stack.server_token("relay", ["aisp/attended-proxy"])
    headers = {"Aisp-User": USER} | ({} if address is None else {PSU_IP: address})

    # When it relays a read with no address, or one that is not an IPv4 or IPv6 address
    response = call(stack, token, headers)

    # Then it is a 400 naming PSU-IP-Address, and the address is not echoed
    assert response.status_code == 400, response.text
    body = problem(response)
    assert (body["code"], [error["field"] for error in body["errors"]]) == ("validation_error", [PSU_IP])
    if address:
        assert address not in response.text


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::1"])
def test_a_valid_forwarded_address_passes_the_caller_checks(stack, address):
    # When the attended-proxy token relays a valid address for a user without a connection
    token = stack.server_token("relay", ["aisp/attended-proxy"])
    response = call(stack, token, {"Aisp-User": USER, PSU_IP: address})

    # Then the caller is accepted (the user is present) and the answer is the user's own: no connection there
    assert response.status_code == 404, response.text
    assert problem(response)["code"] == "connection_not_found"
    # And reading the quota needs no connection (attended: nothing is counted)
    assert call(stack, token, {"Aisp-User": USER, PSU_IP: address}, QUOTA).json()["usage"] == []


def test_an_unattended_token_still_cannot_forward_an_address(stack):
    # When a token with only the unattended scope forwards an address, even where the deployment trusts it
    response = call(stack, stack.server_token("backend"), {"Aisp-User": USER, PSU_IP: "203.0.113.7"})

    # Then it is refused naming the header: only the attended-proxy scope may say the user is present
    assert response.status_code == 400, response.text
    assert [error["field"] for error in problem(response)["errors"]] == [PSU_IP]
