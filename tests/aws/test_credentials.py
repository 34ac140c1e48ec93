"""TPP credentials from Secrets Manager (moto, in-process)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import boto3
import pytest
import trustme
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from aisp.aws.secrets import get_bank_credentials, parse_bank_credentials, qwac_cert_files
from aisp.errors import ConfigurationError

SECRET_NAME = "aisp/bank-credentials"


@pytest.fixture(scope="module")
def secret_value() -> dict[str, str]:
    ca = trustme.CA()
    qwac = ca.issue_cert("tpp.example")
    qseal = ca.issue_cert("qseal.tpp.example")
    return {
        "client_id": "PSDFR-ACPR-13807",
        "qwac_cert_pem": qwac.cert_chain_pems[0].bytes().decode(),
        "qwac_key_pem": qwac.private_key_pem.bytes().decode(),
        "qseal_key_pem": qseal.private_key_pem.bytes().decode(),
        "qseal_key_id": "PSDFR-ACPR-13807",
    }


@pytest.fixture
def secrets():
    with mock_aws():
        yield boto3.client("secretsmanager")


def test_credentials_are_loaded_and_keys_never_printed(secrets, secret_value):
    # Given the secret in Secrets Manager
    secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(secret_value))

    # When it is loaded
    credentials = get_bank_credentials(SECRET_NAME, max_age=60)

    # Then the fields are there and neither repr nor str shows a key
    assert credentials.client_id == "PSDFR-ACPR-13807"
    assert credentials.qseal_key_pem.get_secret_value() == secret_value["qseal_key_pem"]
    for text in (repr(credentials), str(credentials)):
        assert "PRIVATE KEY" not in text
        assert secret_value["qwac_key_pem"][40:80] not in text


def test_credentials_are_cached_for_max_age(secrets, secret_value):
    secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(secret_value))
    first = get_bank_credentials(SECRET_NAME, max_age=300)

    # A rotation within max_age is not seen yet: the cached value is served.
    secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps({**secret_value, "client_id": "NEW"}))
    assert get_bank_credentials(SECRET_NAME, max_age=300).client_id == first.client_id
    # Once the cache entry is gone (max_age elapsed), the rotated value is read.
    parameters.clear_caches()
    assert get_bank_credentials(SECRET_NAME, max_age=300).client_id == "NEW"


@pytest.mark.parametrize("field", ["client_id", "qwac_cert_pem", "qwac_key_pem", "qseal_key_pem", "qseal_key_id"])
def test_incomplete_secret_names_the_missing_field(secrets, secret_value, field):
    incomplete = {k: v for k, v in secret_value.items() if k != field}
    secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(incomplete))

    with pytest.raises(ConfigurationError) as caught:
        get_bank_credentials(SECRET_NAME)

    assert str(caught.value) == f"bank credentials secret is missing field(s): {field}"
    assert caught.value.details["missing"] == [field]


def test_malformed_fields_are_named_without_values(secret_value):
    bad = {**secret_value, "qwac_cert_pem": "not a certificate", "qseal_key_pem": "-----BEGIN PUBLIC KEY-----x"}
    with pytest.raises(ConfigurationError) as caught:
        parse_bank_credentials(bad, source=SECRET_NAME)
    assert caught.value.details["invalid"] == ["qseal_key_pem", "qwac_cert_pem"]
    assert "not a certificate" not in str(caught.value)


def test_unreadable_or_non_json_secret(secrets):
    with pytest.raises(ConfigurationError, match="could not be read"):
        get_bank_credentials("does/not/exist")
    secrets.create_secret(Name=SECRET_NAME, SecretString="{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        get_bank_credentials(SECRET_NAME)
    with pytest.raises(ConfigurationError, match="not a JSON object"):
        parse_bank_credentials(["a"], source=SECRET_NAME)


def test_qwac_files_are_private_written_once_and_replaced_on_rotation(secret_value):
    credentials = parse_bank_credentials(secret_value, source=SECRET_NAME)

    cert_path, key_path = qwac_cert_files(credentials)

    assert Path(cert_path).read_text() == secret_value["qwac_cert_pem"]
    assert Path(key_path).read_text() == secret_value["qwac_key_pem"]
    for path in (cert_path, key_path):
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(key_path).parent.stat().st_mode) == 0o700
    # Same credentials: same files, not rewritten.
    assert qwac_cert_files(credentials) == (cert_path, key_path)

    # A rotated QWAC gets new files and the old pair is removed.
    rotated_pair = trustme.CA().issue_cert("tpp.example")
    rotated = parse_bank_credentials(
        {
            **secret_value,
            "qwac_cert_pem": rotated_pair.cert_chain_pems[0].bytes().decode(),
            "qwac_key_pem": rotated_pair.private_key_pem.bytes().decode(),
        },
        source=SECRET_NAME,
    )
    new_cert, _new_key = qwac_cert_files(rotated)
    assert new_cert != cert_path
    assert not Path(key_path).exists()
