"""The sandbox signs its AISP answers as BPCE does, and the gateway's client checks them (over real HTTPS + mTLS)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from aisp.errors import BankSignatureInvalidError
from aisp.signing import BankSignatureAuth, PinnedCertificates, certificate_fingerprint, verify_response
from aisp.stet import BankClient
from aisp.stet.client import ResponseVerification
from sandbox.server import RunningSandbox
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS, SandboxClient

pytestmark = pytest.mark.integration

PSU_IP = "192.168.0.1"


@pytest.fixture
def pinned(sandbox: RunningSandbox) -> PinnedCertificates:
    return PinnedCertificates.of(sandbox.credentials["bank_signing_certificates"]["13807"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/accounts", 200),
        ("GET", f"/accounts/{MARC_ACCOUNTS[0]}/balances", 200),
        ("GET", f"/accounts/{MARC_ACCOUNTS[0]}/transactions?page=2", 200),
        ("GET", "/accounts/unknown/balances", 404),
    ],
)
def test_every_aisp_answer_is_signed_as_bpce_signs_it(
    client: SandboxClient, pinned: PinnedCertificates, method: str, path: str, status: int
) -> None:
    access = client.connect(MARC)["access_token"]

    response = client.call(method, path, access, psu_ip=PSU_IP, headers={"X-Request-ID": "req-1"})

    assert response.status_code == status
    signature = response.headers["Signature"]
    fingerprint = certificate_fingerprint(next(iter(pinned.by_fingerprint.values())))
    assert f'keyId="https://www.13807.sandbox.api.89c3.com/api/keyid/certificate_{fingerprint}"' in signature
    assert 'headers="digest date content-type x-request-id (request-target)"' in signature
    assert (
        verify_response(
            method, response.request.url or "", response.headers, response.content, request_id="req-1", pinned=pinned
        )
        == fingerprint
    )


def test_a_201_without_body_is_signed_too(client: SandboxClient, pinned: PinnedCertificates) -> None:
    access = client.connect(MARC)["access_token"]
    body = b'{"balances":[],"transactions":[],"trustedBeneficiaries":false,"psuIdentity":false}'

    response = client.call("PUT", "/consents", access, body=body, headers={"X-Request-ID": "req-2"})

    assert (response.status_code, response.content) == (201, b"")
    assert 'headers="digest date x-request-id (request-target)"' in response.headers["Signature"]
    verify_response("PUT", response.request.url or "", response.headers, b"", request_id="req-2", pinned=pinned)


def test_token_answers_are_not_signed(client: SandboxClient) -> None:
    # BPCE's recorded signed answers are the API's; the OAuth endpoints' are not documented as signed
    code = client.login(MARC)
    assert "Signature" not in client.exchange(code).headers


@pytest.fixture
def bank_client(sandbox: RunningSandbox) -> Iterator[Callable[[list[str]], BankClient]]:
    sessions: list[requests.Session] = []

    def build(pinned_pems: list[str]) -> BankClient:
        session = requests.Session()
        session.trust_env = False
        sessions.append(session)
        return BankClient(
            bank_code="13807",
            base_url=sandbox.api_url("13807"),
            api_prefix="/stet/psd2/v1",
            stet_version="1.4.0.47",
            client_id=sandbox.credentials["client_id"],
            auth=BankSignatureAuth(
                key_id=sandbox.credentials["qseal_key_id"], private_key_pem=sandbox.credentials["qseal_key_pem"]
            ),
            cert=sandbox.client_cert,
            verify=str(sandbox.ca_path),
            response_verification=ResponseVerification(mode="enforce", pinned=PinnedCertificates.of(pinned_pems)),
            session=session,
        )

    yield build
    for session in sessions:
        session.close()


def test_the_client_enforces_the_pinned_certificate_against_the_sandbox(
    client: SandboxClient, sandbox: RunningSandbox, bank_client
) -> None:
    access = client.connect(MARC)["access_token"]
    right = sandbox.credentials["bank_signing_certificates"]["13807"]

    # With the sandbox's certificate pinned, its answers verify and are used
    assert len(bank_client(right).get_accounts(access, None).accounts) == 3

    # With another certificate pinned (the sandbox's QWAC, say), the same answers are refused
    with pytest.raises(BankSignatureInvalidError) as caught:
        bank_client([sandbox.credentials["qwac_cert_pem"]]).get_accounts(access, None)
    assert caught.value.details["reason"] == "unpinned_key"
