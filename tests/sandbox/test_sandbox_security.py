"""Every rejection of an AISP call: client certificate, X-Request-ID, Bearer token, Digest, Signature."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from aisp.signing import sign_request
from tests.sandbox.helpers import (
    MARC,
    MARC_ACCOUNTS,
    MARC_IBANS,
    SandboxClient,
    consent_body,
    issue_client_certificate,
)

pytestmark = pytest.mark.integration

ERROR_FIELDS = {"timestamp", "status", "error", "message", "path"}


@pytest.fixture
def marc(client: SandboxClient) -> Iterator[str]:
    """Marc's access token."""
    yield client.connect(MARC)["access_token"]


def _assert_401(response: requests.Response, message: str, path: str = "/13807/stet/psd2/v1/accounts") -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == ERROR_FIELDS
    assert (body["status"], body["error"], body["path"]) == (401, "Unauthorized", path)
    assert message in body["message"]


def test_a_well_signed_call_passes(client: SandboxClient, marc: str) -> None:
    assert client.get("/accounts", marc).status_code == 200


def test_no_client_certificate_is_401(client: SandboxClient, marc: str) -> None:
    _assert_401(client.get("/accounts", marc, cert=None), "client certificate")


def test_the_client_certificate_of_another_tpp_is_401(
    client: SandboxClient, marc: str, certs_dir: Path, tmp_path: Path
) -> None:
    other = issue_client_certificate(certs_dir, tmp_path, "PSDFR-ACPR-99999")

    _assert_401(client.get("/accounts", marc, cert=other), "access token")


def test_missing_x_request_id_is_401(client: SandboxClient, marc: str) -> None:
    url = client.url("/accounts")
    headers = {"Authorization": f"Bearer {marc}"}
    headers.update(
        sign_request(
            "GET",
            url,
            headers,
            b"",
            key_id=client.key_id,
            private_key_pem=client.key_pem,
            signed_headers=["(request-target)", "date", "digest"],
        )
    )

    response = client.api.get(url, headers=headers, timeout=5)

    _assert_401(response, "X-Request-ID")
    assert "X-Request-ID" not in response.headers


def test_an_x_request_id_over_70_characters_is_401(client: SandboxClient, marc: str) -> None:
    response = client.get("/accounts", marc, headers={"X-Request-ID": "x" * 71})

    _assert_401(response, "70")


def test_the_x_request_id_is_echoed_on_errors_too(client: SandboxClient) -> None:
    response = client.get("/accounts", "not-a-token", headers={"X-Request-ID": "trace-me-1"})

    _assert_401(response, "access token")
    assert response.headers["X-Request-ID"] == "trace-me-1"


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic abc", "Bearer unknown-token"])
def test_missing_or_unknown_bearer_token_is_401(client: SandboxClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.get("/accounts", None, headers=headers)

    _assert_401(response, "access token")


def test_an_expired_access_token_is_401(client: SandboxClient, marc: str) -> None:
    client.advance_clock(3600)

    _assert_401(client.get("/accounts", marc), "expired")


def test_an_expired_token_via_admin_is_401(client: SandboxClient, marc: str) -> None:
    assert client.admin("POST", "expire-access-tokens", {"psu": MARC}).json() == {"expired": 1}

    _assert_401(client.get("/accounts", marc), "access token")


def test_a_missing_signature_is_401(client: SandboxClient, marc: str) -> None:
    response = client.get(
        "/accounts", marc, sign=False, headers={"Digest": "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}
    )

    _assert_401(response, "Signature")


def test_a_signature_by_another_key_is_401(client: SandboxClient, marc: str) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()

    _assert_401(client.get("/accounts", marc, key_pem=pem), "Signature verification failed")


def test_a_tampered_signature_is_401(client: SandboxClient, marc: str) -> None:
    url = client.url("/accounts")
    headers = {"X-Request-ID": "id-1", "Authorization": f"Bearer {marc}"}
    headers.update(sign_request("GET", url, headers, b"", key_id=client.key_id, private_key_pem=client.key_pem))
    raw = bytearray(base64.b64decode(headers["Signature"].split('signature="')[1].rstrip('"')))
    raw[10] ^= 0xFF
    headers["Signature"] = (
        headers["Signature"].split('signature="')[0] + f'signature="{base64.b64encode(raw).decode()}"'
    )

    _assert_401(client.api.get(url, headers=headers, timeout=5), "Signature verification failed")


def test_a_signature_for_another_path_is_401(client: SandboxClient, marc: str) -> None:
    url = client.url("/accounts")
    headers = {"X-Request-ID": "id-2", "Authorization": f"Bearer {marc}"}
    headers.update(
        sign_request("GET", client.url("/consents"), headers, b"", key_id=client.key_id, private_key_pem=client.key_pem)
    )

    _assert_401(client.api.get(url, headers=headers, timeout=5), "Signature verification failed")


def test_an_unknown_key_id_is_401(client: SandboxClient, marc: str) -> None:
    _assert_401(client.get("/accounts", marc, key_id="PSDFR-ACPR-99999"), "keyId")


def test_a_wrong_digest_is_401(client: SandboxClient, marc: str) -> None:
    body = json.dumps(consent_body((MARC_IBANS[0],))).encode()
    url = client.url("/consents")
    headers = {"X-Request-ID": "id-3", "Authorization": f"Bearer {marc}", "Content-Type": "application/json"}
    headers.update(sign_request("PUT", url, headers, body, key_id=client.key_id, private_key_pem=client.key_pem))

    tampered = client.api.put(url, headers=headers, data=body.replace(b"false", b"true "), timeout=5)

    _assert_401(tampered, "Digest does not match", "/13807/stet/psd2/v1/consents")


def test_a_missing_digest_is_401(client: SandboxClient, marc: str) -> None:
    url = client.url("/accounts")
    headers = {"X-Request-ID": "id-4", "Authorization": f"Bearer {marc}"}
    signed = sign_request(
        "GET",
        url,
        headers,
        b"",
        key_id=client.key_id,
        private_key_pem=client.key_pem,
        signed_headers=["(request-target)", "date", "x-request-id"],
    )
    del signed["Digest"]
    headers.update(signed)

    _assert_401(client.api.get(url, headers=headers, timeout=5), "Digest")


@pytest.mark.parametrize(
    ("signed_headers", "extra"),
    [
        (["date", "digest", "x-request-id"], {}),
        (["(request-target)", "date", "digest"], {}),
        (["(request-target)", "date", "x-request-id"], {}),
        (["(request-target)", "date", "digest", "x-request-id"], {"PSU-IP-Address": "192.168.0.1"}),
        (
            ["(request-target)", "digest", "x-request-id", "psu-ip-address"],
            {"PSU-IP-Address": "192.168.0.1", "PSU-User-Agent": "Mozilla/5.0"},
        ),
    ],
    ids=["no-request-target", "no-x-request-id", "no-digest", "psu-ip-not-signed", "psu-user-agent-not-signed"],
)
def test_the_signature_must_cover_request_target_x_request_id_digest_and_every_psu_header(
    client: SandboxClient, marc: str, signed_headers: list[str], extra: dict[str, Any]
) -> None:
    response = client.get("/accounts", marc, headers=extra, signed_headers=signed_headers)

    _assert_401(response, "Signature does not cover a required header")


def test_a_minimal_tink_style_signature_is_enough(client: SandboxClient, marc: str) -> None:
    # (request-target) x-request-id digest and the PSU header sent, no Date
    response = client.get(
        f"/accounts/{MARC_ACCOUNTS[0]}/balances",
        marc,
        psu_ip="192.168.0.1",
        signed_headers=["(request-target)", "x-request-id", "digest", "psu-ip-address"],
    )

    assert response.status_code == 200


def test_a_revoked_psu_cannot_call_anymore(client: SandboxClient, marc: str) -> None:
    assert client.admin("POST", "revoke", {"bank": "13807", "psu": MARC}).json() == {"revoked": 1}

    _assert_401(client.get("/accounts", marc), "revoked")


def test_unknown_paths_and_banks_are_404_error_models(client: SandboxClient, marc: str) -> None:
    unknown_resource = client.get("/payments", marc)
    unknown_bank = client.anonymous.get(f"{client.sandbox.api_origin}/99999/stet/psd2/v1/accounts", timeout=5)

    assert unknown_resource.status_code == 404
    assert set(unknown_resource.json()) == ERROR_FIELDS
    assert unknown_bank.status_code == 404
    assert unknown_bank.json()["path"] == "/99999/stet/psd2/v1/accounts"
