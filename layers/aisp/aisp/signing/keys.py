"""Key material for request signing: the :class:`KeyProvider` port and a static implementation.

Keys are parsed once (at construction) and kept in memory for the life of the container. Error messages never
include key material, only a constant description.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import load_pem_x509_certificate

from aisp.errors import SigningError

__all__ = ["KeyProvider", "StaticKeyProvider", "load_private_key", "load_public_key"]

_MIN_RSA_BITS = 2048
_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"


@runtime_checkable
class KeyProvider(Protocol):
    """Where the signer gets its keyId and RSA private key from (e.g. a Secrets Manager backed provider)."""

    @property
    def key_id(self) -> str:
        """The ``keyId`` to put in the ``Signature`` header (BPCE: the TPP client_id)."""
        ...

    def private_key(self) -> rsa.RSAPrivateKey:
        """Return the parsed RSA private key (QSealC key)."""
        ...


def _as_bytes(pem: str | bytes) -> bytes:
    if isinstance(pem, str):
        # A PEM is ASCII; anything else is simply unreadable (utf-8 keeps the error path uniform).
        return pem.encode("utf-8", errors="replace")
    if isinstance(pem, bytes | bytearray):
        return bytes(pem)
    raise SigningError("key PEM must be str or bytes", details={"reason": "bad_pem"})


def load_private_key(private_key_pem: str | bytes, *, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """Parse an RSA private key PEM (PKCS#8 or PKCS#1).

    Parameters
    ----------
    private_key_pem
        The PEM text.
    password
        Passphrase of an encrypted PEM, if any.

    Returns
    -------
    rsa.RSAPrivateKey
        The parsed key.

    Raises
    ------
    SigningError
        The PEM is empty, unreadable, encrypted without the right password, not RSA, or too short.
        The message never contains key material.
    """
    if not private_key_pem:
        raise SigningError("signing key is empty", details={"reason": "empty_key"})
    try:
        key = serialization.load_pem_private_key(_as_bytes(private_key_pem), password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # ``from None``: the chained exception's text could echo parts of the input into logs.
        raise SigningError("signing key is not a readable PEM private key", details={"reason": "bad_pem"}) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningError("signing key is not an RSA key", details={"reason": "not_rsa"})
    if key.key_size < _MIN_RSA_BITS:
        raise SigningError("signing key is too short", details={"reason": "weak_key", "key_size": key.key_size})
    return key


def load_public_key(public_key_pem: str | bytes) -> rsa.RSAPublicKey:
    """Parse an RSA public key from a ``PUBLIC KEY`` PEM or from an X.509 certificate PEM.

    Raises
    ------
    SigningError
        The PEM is unreadable or the key is not RSA.
    """
    if not public_key_pem:
        raise SigningError("verification key is empty", details={"reason": "empty_key"})
    data = _as_bytes(public_key_pem)
    try:
        key: object = (
            load_pem_x509_certificate(data).public_key()
            if _CERT_MARKER in data
            else serialization.load_pem_public_key(data)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError("verification key is not a readable PEM", details={"reason": "bad_pem"}) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningError("verification key is not an RSA key", details={"reason": "not_rsa"})
    return key


class StaticKeyProvider:
    """A :class:`KeyProvider` over one PEM held in memory, parsed once at construction.

    Parameters
    ----------
    key_id
        The ``keyId`` (BPCE: the client_id, e.g. ``PSDFR-ACPR-12345``).
    private_key_pem
        RSA private key PEM.
    password
        Passphrase if the PEM is encrypted.

    Raises
    ------
    SigningError
        Empty key_id, unreadable or non-RSA key.
    """

    __slots__ = ("_key", "_key_id")

    def __init__(self, *, key_id: str, private_key_pem: str | bytes, password: bytes | None = None) -> None:
        if not isinstance(key_id, str) or not key_id.strip():
            raise SigningError("signing key_id is empty", details={"reason": "empty_key_id"})
        if '"' in key_id or "\n" in key_id or "\r" in key_id:
            raise SigningError("signing key_id contains forbidden characters", details={"reason": "bad_key_id"})
        self._key_id = key_id
        self._key = load_private_key(private_key_pem, password=password)

    @property
    def key_id(self) -> str:
        """The configured keyId."""
        return self._key_id

    def private_key(self) -> rsa.RSAPrivateKey:
        """The parsed private key."""
        return self._key

    def __repr__(self) -> str:
        return f"StaticKeyProvider(key_id={self._key_id!r})"
