"""Envelope encryption of the tokens: AES-256-GCM under a cached KMS data key, bound to the record."""

from __future__ import annotations

import boto3
import pytest

from aisp import wiring
from aisp.aws.kms import KMS_ENCRYPTION_CONTEXT, EnvelopeCipher
from aisp.errors import KeyServiceError, TokenCryptoError, TokenIntegrityError

MARC = {"user_id": "user-marc", "bank_code": "13807"}
SECRET = b'{"access_token":"at-123","refresh_token":"rt-456"}'


class KmsCallCounter:
    """Counts the KMS API calls a client really makes (botocore event hook, no wrapper around our code)."""

    def __init__(self, client) -> None:
        self.counts: dict[str, int] = {}
        client.meta.events.register("before-call.kms.*", self._count)

    def _count(self, model, **_kwargs) -> None:
        self.counts[model.name] = self.counts.get(model.name, 0) + 1


@pytest.fixture
def kms_client(aws):
    return boto3.client("kms")


def test_round_trip_hides_the_plaintext_and_uses_a_fresh_nonce(aws, kms_client):
    # Given a cipher on the template's key
    cipher = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client)

    # When the same tokens are sealed twice for Marc's record
    first = cipher.encrypt(SECRET, binding=MARC)
    second = cipher.encrypt(SECRET, binding=MARC)

    # Then both open to the plaintext, neither contains it, and they differ (random nonce)
    assert cipher.decrypt(first, binding=MARC) == SECRET
    assert cipher.decrypt(second, binding=MARC) == SECRET
    assert first != second
    assert b"at-123" not in first and b"rt-456" not in first
    assert first[0] == 1  # format version


@pytest.mark.parametrize(
    "other",
    [
        {"user_id": "user-eve", "bank_code": "13807"},  # another user's record
        {"user_id": "user-marc", "bank_code": "17515"},  # Marc's record at another bank
        {"user_id": "user-marc13807", "bank_code": ""},  # same concatenation, different fields
    ],
)
def test_a_ciphertext_moved_to_another_record_does_not_decrypt(aws, kms_client, other):
    cipher = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client)
    blob = cipher.encrypt(SECRET, binding=MARC)

    with pytest.raises(TokenIntegrityError):
        cipher.decrypt(blob, binding=other)


@pytest.mark.parametrize("position", [0, -30, -13, -1])  # format byte, nonce, ciphertext, tag
def test_any_tampered_byte_is_refused(aws, kms_client, position):
    cipher = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client)
    blob = bytearray(cipher.encrypt(SECRET, binding=MARC))
    blob[position] ^= 0x01

    with pytest.raises(TokenIntegrityError):
        cipher.decrypt(bytes(blob), binding=MARC)


def test_a_tampered_wrapped_key_is_refused(aws, kms_client):
    blob = bytearray(EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client).encrypt(SECRET, binding=MARC))
    blob[10] ^= 0x01

    # A fresh container must ask KMS; real KMS answers InvalidCiphertextException (→ TokenIntegrityError), moto
    # answers AccessDenied (→ KeyServiceError): either way nothing decrypts.
    with pytest.raises(TokenCryptoError):
        EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client).decrypt(bytes(blob), binding=MARC)


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01\x00\x05abc", b"\x02\x00\x01x" + bytes(40)])
def test_malformed_blobs_are_integrity_errors(aws, kms_client, blob):
    cipher = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client)
    with pytest.raises(TokenIntegrityError):
        cipher.decrypt(blob, binding=MARC)


def test_one_data_key_per_container_and_unwrapped_keys_are_cached(aws, kms_client):
    # Given a cipher whose KMS calls are counted
    counter = KmsCallCounter(kms_client)
    cipher = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client)

    # When it seals 25 records and opens them all
    blobs = [cipher.encrypt(SECRET, binding={"user_id": f"user-{i}", "bank_code": "13807"}) for i in range(25)]
    for i, blob in enumerate(blobs):
        assert cipher.decrypt(blob, binding={"user_id": f"user-{i}", "bank_code": "13807"}) == SECRET

    # Then KMS generated one data key and was never asked to decrypt it (this container made it)
    assert counter.counts == {"GenerateDataKey": 1}

    # And another container opens them all with a single kms:Decrypt
    other_client = boto3.client("kms")
    other_counter = KmsCallCounter(other_client)
    other = EnvelopeCipher(key_id=aws.key_arn, kms_client=other_client)
    for i, blob in enumerate(blobs):
        assert other.decrypt(blob, binding={"user_id": f"user-{i}", "bank_code": "13807"}) == SECRET
    assert other_counter.counts == {"Decrypt": 1}


def test_the_data_key_is_replaced_after_its_use_limit(aws, kms_client):
    counter = KmsCallCounter(kms_client)
    cipher = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client, max_key_uses=3)

    blobs = [cipher.encrypt(SECRET, binding=MARC) for _ in range(7)]

    assert counter.counts == {"GenerateDataKey": 3}
    assert all(cipher.decrypt(blob, binding=MARC) == SECRET for blob in blobs)
    assert counter.counts == {"GenerateDataKey": 3}  # every key it made is still cached


def test_wrapped_data_keys_need_the_kms_encryption_context(aws, kms_client):
    # Given a blob's wrapped data key
    blob = EnvelopeCipher(key_id=aws.key_arn, kms_client=kms_client).encrypt(SECRET, binding=MARC)
    wrapped = blob[3 : 3 + int.from_bytes(blob[1:3], "big")]

    # Then KMS unwraps it only with the purpose context
    assert kms_client.decrypt(CiphertextBlob=wrapped, EncryptionContext=dict(KMS_ENCRYPTION_CONTEXT))["Plaintext"]
    with pytest.raises(kms_client.exceptions.InvalidCiphertextException):
        kms_client.decrypt(CiphertextBlob=wrapped, EncryptionContext={"aisp:purpose": "something-else"})


def test_kms_failures_are_key_service_errors(aws, kms_client):
    # Given a key that does not exist (deleted, or a wrong TOKEN_KEY_ID)
    missing = aws.key_arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    cipher = EnvelopeCipher(key_id=missing, kms_client=kms_client)

    # Then sealing fails with a typed error that names the AWS code, not the key material
    with pytest.raises(KeyServiceError) as caught:
        cipher.encrypt(SECRET, binding=MARC)
    assert caught.value.details["aws_error_code"]


def test_the_container_cipher_is_built_lazily_from_settings(aws):
    cipher = wiring.token_cipher()

    assert cipher is wiring.token_cipher()
    assert aws.key_arn in repr(cipher)
    assert cipher.decrypt(cipher.encrypt(SECRET, binding=MARC), binding=MARC) == SECRET
