"""Envelope encryption of the bank tokens with the template's KMS key (``TOKEN_KEY_ID``), and the cursor key.

One AES-256 data key per container (``kms:GenerateDataKey`` once), every record sealed locally with AES-256-GCM under
a fresh nonce, bound to ``user_id`` + ``bank_code`` by the additional data; unwrapped data keys are cached, so a warm
container decrypts without calling KMS. Design and why not the AWS Encryption SDK: ``docs/connect.md`` (Tokens at
rest).

Blob format v1::

    0x01 | u16 len(wrapped_key) | wrapped_key | nonce (12) | AES-GCM ciphertext || tag (16)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aisp.errors import KeyServiceError, TokenIntegrityError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

__all__ = ["KMS_ENCRYPTION_CONTEXT", "EnvelopeCipher", "TokenCipher", "derive_cursor_key"]

FORMAT_V1: Final = 1
KMS_ENCRYPTION_CONTEXT: Final[Mapping[str, str]] = {"aisp:purpose": "bank-tokens", "aisp:format": "1"}
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_HEADER: Final = struct.Struct(">BH")
# Far below the 2**32 messages NIST SP 800-38D allows per key with random nonces; also bounds a key's lifetime.
DEFAULT_MAX_KEY_USES: Final = 1 << 20
DEFAULT_MAX_KEY_AGE_SECONDS: Final = 12 * 3600
DEFAULT_CACHE_SIZE: Final = 512


class TokenCipher(Protocol):
    """Seals and opens token blobs bound to one record."""

    def encrypt(self, plaintext: bytes, *, binding: Mapping[str, str]) -> bytes:
        """Encrypt ``plaintext`` for the record identified by ``binding``."""
        ...

    def decrypt(self, blob: bytes, *, binding: Mapping[str, str]) -> bytes:
        """Decrypt a blob; raises :class:`~aisp.errors.TokenIntegrityError` if it is not for ``binding``."""
        ...


@dataclass(slots=True)
class _DataKey:
    wrapped: bytes
    aead: AESGCM
    created_at: float
    uses: int = 0


def _digest(wrapped: bytes) -> bytes:
    return hashlib.sha256(wrapped).digest()


def _associated_data(header: bytes, binding: Mapping[str, str]) -> bytes:
    # JSON with sorted keys: an unambiguous encoding ("a|b" + "c" can never collide with "a" + "b|c").
    canonical = json.dumps(dict(sorted(binding.items())), separators=(",", ":"), ensure_ascii=True)
    return header + b"\x00" + canonical.encode("ascii")


class EnvelopeCipher:
    """KMS envelope encryption with a cached data key (see the module docstring).

    Parameters
    ----------
    key_id
        The KMS key (ARN, id or alias) that wraps the data keys.
    kms_client
        A boto3 KMS client, or ``None`` to create one on first use (region and endpoint from the AWS environment).
    max_key_uses, max_key_age_seconds
        When the current data key is replaced by a new one.
    cache_size
        How many unwrapped data keys to keep (least recently used are dropped).
    monotonic
        Injected for tests.

    Thread-safe: the refresher seals and opens blobs from a thread pool.
    """

    def __init__(
        self,
        *,
        key_id: str,
        kms_client: KMSClient | None = None,
        max_key_uses: int = DEFAULT_MAX_KEY_USES,
        max_key_age_seconds: float = DEFAULT_MAX_KEY_AGE_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key_id = key_id
        self._kms = kms_client
        self._max_key_uses = max_key_uses
        self._max_key_age = max_key_age_seconds
        self._cache_size = cache_size
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._current: _DataKey | None = None
        self._unwrapped: OrderedDict[bytes, AESGCM] = OrderedDict()

    def __repr__(self) -> str:
        return f"EnvelopeCipher(key_id={self._key_id!r})"

    # ------------------------------------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, *, binding: Mapping[str, str]) -> bytes:
        """Seal ``plaintext`` for ``binding`` (e.g. ``{"user_id": ..., "bank_code": ...}``).

        Raises
        ------
        KeyServiceError
            KMS could not generate a data key.
        """
        key = self._data_key()
        header = _HEADER.pack(FORMAT_V1, len(key.wrapped)) + key.wrapped
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + key.aead.encrypt(nonce, plaintext, _associated_data(header, binding))

    def decrypt(self, blob: bytes, *, binding: Mapping[str, str]) -> bytes:
        """Open a blob sealed for ``binding``.

        Raises
        ------
        TokenIntegrityError
            Malformed blob, unknown format, a wrapped key KMS does not recognise, or a ciphertext that does not
            authenticate for ``binding`` (tampered, or copied from another record).
        KeyServiceError
            KMS is unavailable or refuses the key.
        """
        if len(blob) < _HEADER.size:
            raise TokenIntegrityError("token blob is malformed", details={"reason": "short"})
        version, wrapped_length = _HEADER.unpack_from(blob)
        if version != FORMAT_V1:
            raise TokenIntegrityError("token blob has an unknown format", details={"format": version})
        body_start = _HEADER.size + wrapped_length
        if wrapped_length == 0 or len(blob) < body_start + NONCE_BYTES + TAG_BYTES:
            raise TokenIntegrityError("token blob is malformed", details={"reason": "truncated"})
        header, wrapped = blob[:body_start], blob[_HEADER.size : body_start]
        nonce, ciphertext = blob[body_start : body_start + NONCE_BYTES], blob[body_start + NONCE_BYTES :]
        aead = self._unwrap(wrapped)
        try:
            return aead.decrypt(nonce, ciphertext, _associated_data(header, binding))
        except InvalidTag:
            raise TokenIntegrityError("token blob does not authenticate for this record") from None

    # ------------------------------------------------------------------------------------------------------------

    def _client(self) -> KMSClient:
        if self._kms is None:
            import boto3  # noqa: PLC0415 - only the first seal/open of a container pays for it

            self._kms = boto3.client("kms")
        return self._kms

    def _data_key(self) -> _DataKey:
        # The lock is held across GenerateDataKey on purpose: concurrent first encryptions share one data key.
        with self._lock:
            key = self._current
            if key is None or key.uses >= self._max_key_uses or self._monotonic() - key.created_at > self._max_key_age:
                key = self._current = self._generate()
                self._remember_locked(key.wrapped, key.aead)
            key.uses += 1
            return key

    def _generate(self) -> _DataKey:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response: Mapping[str, Any] = self._client().generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=dict(KMS_ENCRYPTION_CONTEXT)
            )
        except (ClientError, BotoCoreError) as exc:
            raise KeyServiceError("KMS could not generate a data key", details=_kms_details(exc)) from exc
        # The plaintext key is handed to AESGCM and not kept anywhere else.
        return _DataKey(
            wrapped=bytes(response["CiphertextBlob"]), aead=AESGCM(response["Plaintext"]), created_at=self._monotonic()
        )

    def _unwrap(self, wrapped: bytes) -> AESGCM:
        digest = _digest(wrapped)
        with self._lock:
            cached = self._unwrapped.get(digest)
            if cached is not None:
                self._unwrapped.move_to_end(digest)
                return cached
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response: Mapping[str, Any] = self._client().decrypt(
                CiphertextBlob=wrapped, KeyId=self._key_id, EncryptionContext=dict(KMS_ENCRYPTION_CONTEXT)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"InvalidCiphertextException", "IncorrectKeyException"}:
                raise TokenIntegrityError("token data key is not ours or is corrupted") from exc
            raise KeyServiceError("KMS could not decrypt a data key", details=_kms_details(exc)) from exc
        except BotoCoreError as exc:
            raise KeyServiceError("KMS could not decrypt a data key", details=_kms_details(exc)) from exc
        aead = AESGCM(response["Plaintext"])
        with self._lock:
            self._remember_locked(wrapped, aead)
        return aead

    def _remember_locked(self, wrapped: bytes, aead: AESGCM) -> None:
        digest = _digest(wrapped)
        self._unwrapped[digest] = aead
        self._unwrapped.move_to_end(digest)
        while len(self._unwrapped) > self._cache_size:
            self._unwrapped.popitem(last=False)


def _kms_details(exc: Exception) -> dict[str, str]:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return {"error_type": type(exc).__name__, **({"aws_error_code": str(code)} if code else {})}


def derive_cursor_key(key_id: str, label: bytes, kms_client: KMSClient | None = None) -> bytes:
    """The deployment's cursor key: ``GenerateMac(HMAC_SHA_256, label)`` under the KMS HMAC key ``key_id``
    (``aisp.cursors`` says why).

    Raises
    ------
    KeyServiceError
        KMS refused or failed (key missing, disabled, not an HMAC key, access denied, throttled).
    """
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    if kms_client is None:
        import boto3  # noqa: PLC0415 - the first cursor of a container pays for it

        kms_client = boto3.client("kms")
    try:
        response: Mapping[str, Any] = kms_client.generate_mac(KeyId=key_id, Message=label, MacAlgorithm="HMAC_SHA_256")
    except (ClientError, BotoCoreError) as exc:
        response_meta = getattr(exc, "response", None)
        code = response_meta.get("Error", {}).get("Code") if isinstance(response_meta, dict) else None
        raise KeyServiceError(
            "KMS could not derive the cursor key",
            details={"error_type": type(exc).__name__, **({"aws_error_code": str(code)} if code else {})},
        ) from exc
    return bytes(response["Mac"])
