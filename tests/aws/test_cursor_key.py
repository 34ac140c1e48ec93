"""The cursor sealing key: one KMS GenerateMac (moto) per container, the same in every container."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aisp import wiring
from aisp.aws.kms import derive_cursor_key
from aisp.cursors import KEY_LABEL, CursorPosition, CursorSealer
from aisp.errors import KeyServiceError

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BOUND = {"user_id": "user-marc", "bank_code": "13807", "account_id": "038-CPT30019654051"}
NEXT = "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/accounts/038-CPT30019654051/transactions?page=2"


def test_every_container_derives_the_same_key_from_kms(aws):
    # Given the template's HMAC key in (moto) KMS
    import boto3

    # When two "containers" (two clients) derive the cursor key
    first = derive_cursor_key(aws.cursor_key_arn, KEY_LABEL, boto3.client("kms"))
    second = derive_cursor_key(aws.cursor_key_arn, KEY_LABEL, boto3.client("kms"))

    # Then they agree, so a cursor sealed in one opens in the other
    assert first == second and len(first) == 32
    cursor = CursorSealer(first, ttl_seconds=60).seal(CursorPosition(page_url=NEXT), now=NOW, **BOUND)
    assert CursorSealer(second, ttl_seconds=60).open(cursor, now=NOW, **BOUND).page_url == NEXT


def test_the_container_sealer_calls_kms_once(aws, monkeypatch):
    import boto3

    calls = []
    real_client = boto3.client

    def counting_client(service, *args, **kwargs):
        client = real_client(service, *args, **kwargs)
        if service == "kms":
            original = client.generate_mac
            client.generate_mac = lambda **kw: calls.append(kw) or original(**kw)
        return client

    monkeypatch.setattr(boto3, "client", counting_client)
    sealer = wiring.cursor_sealer()
    for _ in range(5):
        sealer.open(sealer.seal(CursorPosition(page_url=NEXT), now=NOW, **BOUND), now=NOW, **BOUND)

    assert wiring.cursor_sealer() is sealer
    assert len(calls) == 1


def test_a_kms_failure_is_a_key_service_error(aws):
    import boto3

    with pytest.raises(KeyServiceError):
        derive_cursor_key(aws.key_arn, KEY_LABEL, boto3.client("kms"))  # the token key is not an HMAC key
