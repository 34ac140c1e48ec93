"""get_bank_client: registry + settings + credentials wired into a cached BankClient."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import trustme
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from aisp import wiring
from aisp.aws.secrets import ca_bundle_file
from aisp.errors import ConfigurationError, NotFoundError

SECRET = "aisp/bank-credentials"
LOCAL_BANKS = ("13807", "10207", "17515")
BANK_SEAL = trustme.CA().issue_cert("bank-seal.example", key_type=trustme.KeyType.RSA)


def _secret(ca: trustme.CA, client_id: str = "PSDFR-ACPR-13807") -> str:
    qwac = ca.issue_cert("tpp.example")
    qseal = ca.issue_cert("qseal.example", key_type=trustme.KeyType.RSA)  # QSealC keys are RSA (rsa-sha256)
    return json.dumps(
        {
            "client_id": client_id,
            "qwac_cert_pem": qwac.cert_chain_pems[0].bytes().decode(),
            "qwac_key_pem": qwac.private_key_pem.bytes().decode(),
            "qseal_key_pem": qseal.private_key_pem.bytes().decode(),
            "qseal_key_id": client_id,
            # The offline sandbox's banks enforce signed answers in `local`: their seal certificate is pinned here
            "bank_signing_certificates": {
                code: [BANK_SEAL.cert_chain_pems[0].bytes().decode()] for code in LOCAL_BANKS
            },
        }
    )


@pytest.fixture
def environment(monkeypatch, tmp_path):
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    monkeypatch.setenv("BANK_ENVIRONMENT", "local")
    monkeypatch.setenv("BANK_BASE_URL_TEMPLATE", "https://127.0.0.1:8443/{bank_code}")
    monkeypatch.setenv("BANK_CA_BUNDLE", str(ca_path))
    monkeypatch.setenv("BANK_CREDENTIALS_SECRET_NAME", SECRET)
    wiring.reset()
    wiring.bank_clients.reset()
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=SECRET, SecretString=_secret(ca))
        yield ca, secrets, ca_path
    wiring.reset()
    wiring.bank_clients.reset()


def test_client_is_wired_from_registry_settings_and_credentials(environment):
    _ca, _secrets, ca_path = environment

    client = wiring.bank_clients().get("13807")

    assert client.bank_code == "13807"
    assert client.client_id == "PSDFR-ACPR-13807"
    assert client._api == "https://127.0.0.1:8443/13807/stet/psd2/v1"  # the seed's STET 1.4.0 prefix
    assert client._verify == str(ca_path)
    cert_path, key_path = client._cert
    assert Path(cert_path).is_file() and Path(key_path).is_file()
    assert client._timeout == (3.05, 10.0)
    # The registry's local policy (enforce) with the secret's pinned certificate
    assert client._verification is not None and client._verification.mode == "enforce"
    assert len(client._verification.pinned.by_fingerprint) == 1
    # Warm calls reuse the same client (and its keep-alive session)
    assert wiring.bank_clients().get("13807") is client
    assert wiring.bank_clients().get("17515") is not client


def test_a_rotated_secret_builds_a_new_client(environment):
    ca, secrets, _ = environment
    first = wiring.bank_clients().get("13807")

    secrets.put_secret_value(SecretId=SECRET, SecretString=_secret(ca, client_id="PSDFR-ACPR-99999"))
    parameters.clear_caches()  # what max_age expiry does

    second = wiring.bank_clients().get("13807")
    assert second is not first
    assert second.client_id == "PSDFR-ACPR-99999"


def test_unknown_bank_and_missing_configuration(environment, monkeypatch):
    with pytest.raises(NotFoundError):
        wiring.bank_clients().get("00000")
    monkeypatch.delenv("BANK_CREDENTIALS_SECRET_NAME")
    wiring.reset()
    with pytest.raises(ConfigurationError, match="BANK_CREDENTIALS_SECRET_NAME"):
        wiring.bank_clients().get("13807")


def test_a_ca_given_as_pem_text_is_written_once_and_trusted(environment, monkeypatch):
    # Given BANK_CA_BUNDLE holding the CA itself (sam local: the container cannot see the host's CA file)
    ca, _secrets, ca_path = environment
    pem = ca_path.read_text(encoding="ascii")
    monkeypatch.setenv("BANK_CA_BUNDLE", pem)
    wiring.reset()

    # When the client is built
    client = wiring.bank_clients().get("13807")

    # Then requests verifies against a file holding exactly that PEM, reused for the same PEM
    assert isinstance(client._verify, str)
    assert client._verify != str(ca_path)
    assert Path(client._verify).read_text(encoding="ascii") == pem
    assert Path(client._verify).stat().st_mode & 0o077 == 0  # readable by this process only
    assert ca_bundle_file(pem) == client._verify
    # And a plain path is used as it is
    assert ca_bundle_file(str(ca_path)) == str(ca_path)


def test_enforce_without_a_pinned_certificate_refuses_to_build(environment):
    ca, secrets, _ = environment
    secret = json.loads(_secret(ca))
    del secret["bank_signing_certificates"]
    secrets.put_secret_value(SecretId=SECRET, SecretString=json.dumps(secret))
    parameters.clear_caches()

    with pytest.raises(ConfigurationError, match="pinned bank certificate"):
        wiring.bank_clients().get("13807")
