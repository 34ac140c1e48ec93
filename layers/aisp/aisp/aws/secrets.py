"""The TPP's eIDAS credentials (QWAC for mTLS, QSealC key for HTTP signatures) from Secrets Manager.

The secret (its *name* is ``BANK_CREDENTIALS_SECRET_NAME``) is the JSON object the README's Deploy section shows;
``bank_signing_certificates`` (optional) pins, per bank code, the certificates the bank signs its answers with
(``docs/banks.md``, Signed answers).

It is fetched through Powertools parameters (cached for ``max_age`` seconds). ``requests`` needs the QWAC as files,
so :func:`qwac_cert_files` writes the pair once per container (per secret version) to 0600 files in a private
temporary directory. Key material never reaches a log line, a ``repr`` or an exception message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from aisp.errors import ConfigurationError

CERT_MARKER = "-----BEGIN CERTIFICATE-----"
KEY_MARKER = "PRIVATE KEY-----"
REQUIRED_FIELDS = ("client_id", "qwac_cert_pem", "qwac_key_pem", "qseal_key_pem", "qseal_key_id")


class BankCredentials(BaseModel):
    """The TPP's identity at the bank. Keys are ``SecretStr``: printing the model never shows them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    client_id: Annotated[str, Field(min_length=1, max_length=200)]
    qwac_cert_pem: Annotated[str, Field(min_length=1)]
    qwac_key_pem: SecretStr
    qseal_key_pem: SecretStr
    qseal_key_id: Annotated[str, Field(min_length=1, max_length=2000)]
    bank_signing_certificates: dict[Annotated[str, Field(pattern=r"^[0-9]{5}$")], tuple[str, ...]] = Field(
        default_factory=dict
    )

    @field_validator("qwac_cert_pem")
    @classmethod
    def _is_certificate(cls, value: str) -> str:
        if CERT_MARKER not in value:
            raise ValueError("must be a PEM certificate")
        return value

    @field_validator("bank_signing_certificates")
    @classmethod
    def _are_certificates(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if any(CERT_MARKER not in pem for pems in value.values() for pem in pems):
            raise ValueError("must map bank codes to PEM certificates")
        return value

    @field_validator("qwac_key_pem", "qseal_key_pem")
    @classmethod
    def _is_private_key(cls, value: SecretStr) -> SecretStr:
        if KEY_MARKER not in value.get_secret_value():
            raise ValueError("must be a PEM private key")
        return value

    @property
    def fingerprint(self) -> str:
        """A short digest of the QWAC pair, used to name its files (not a secret: a one-way hash)."""
        material = self.qwac_cert_pem + self.qwac_key_pem.get_secret_value()
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    @property
    def version(self) -> str:
        """A short digest over every field: changes whenever any part of the secret rotates."""
        material = "\n".join(
            (
                self.client_id,
                self.qwac_cert_pem,
                self.qwac_key_pem.get_secret_value(),
                self.qseal_key_pem.get_secret_value(),
                self.qseal_key_id,
                *(f"{code}:{pem}" for code, pems in sorted(self.bank_signing_certificates.items()) for pem in pems),
            )
        )
        return hashlib.sha256(material.encode()).hexdigest()[:16]


def parse_bank_credentials(raw: Any, *, source: str) -> BankCredentials:
    """Validate a decoded secret.

    Parameters
    ----------
    raw
        The decoded JSON value of the secret.
    source
        Where it came from (the secret name), for the error message.

    Raises
    ------
    ConfigurationError
        Naming every missing or malformed field, never a value.
    """
    if not isinstance(raw, dict):
        raise ConfigurationError("bank credentials secret is not a JSON object", details={"secret": source})
    missing = [name for name in REQUIRED_FIELDS if not raw.get(name)]
    if missing:
        raise ConfigurationError(
            f"bank credentials secret is missing field(s): {', '.join(missing)}",
            details={"secret": source, "missing": missing},
        )
    try:
        return BankCredentials.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({str(err["loc"][0]) for err in exc.errors(include_input=False, include_url=False)})
        raise ConfigurationError(
            f"bank credentials secret has invalid field(s): {', '.join(fields)}",
            details={"secret": source, "invalid": fields},
        ) from None


def get_bank_credentials(secret_name: str, *, max_age: int = 300) -> BankCredentials:
    """Fetch and validate the credentials (cached by Powertools for ``max_age`` seconds).

    Raises
    ------
    ConfigurationError
        When the secret cannot be read or decoded, or a field is missing or malformed.
    """
    # Imported here: parameters pulls in boto3 clients that only the first real call needs.
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    try:
        raw = parameters.get_secret(secret_name, transform="json", max_age=max_age)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        # The cause is kept for the traceback; its text is not repeated in our message.
        raise ConfigurationError(
            "bank credentials secret could not be read or is not valid JSON", details={"secret": secret_name}
        ) from exc
    return parse_bank_credentials(raw, source=secret_name)


_files_lock = threading.Lock()
_files: dict[str, tuple[str, str]] = {}


def qwac_cert_files(credentials: BankCredentials) -> tuple[str, str]:
    """Return ``(cert_path, key_path)`` of the QWAC pair for ``requests``' ``cert=``.

    The files are written once per container and secret version, readable by this process only (0600 in a 0700
    directory). When the secret rotates, the previous pair is deleted.
    """
    fingerprint = credentials.fingerprint
    with _files_lock:
        cached = _files.get(fingerprint)
        if cached and all(Path(path).exists() for path in cached):
            return cached
        directory = Path(tempfile.mkdtemp(prefix="aisp-qwac-"))  # created 0700
        cert_path = directory / "qwac.crt"
        key_path = directory / "qwac.key"
        _write_private(cert_path, credentials.qwac_cert_pem)
        _write_private(key_path, credentials.qwac_key_pem.get_secret_value())
        for old_cert, _old_key in _files.values():
            shutil.rmtree(Path(old_cert).parent, ignore_errors=True)
        _files.clear()
        _files[fingerprint] = (str(cert_path), str(key_path))
        return _files[fingerprint]


_ca_files: dict[str, str] = {}


def ca_bundle_file(ca_bundle: str) -> str:
    """A file path for ``requests``' ``verify=`` from ``BANK_CA_BUNDLE``: the path itself, or, for PEM text
    (``sam local``: a container cannot see the host's CA file), a file written once per container like the QWAC pair
    (0600 in a fresh 0700 directory, so no other local user can plant a CA there first)."""
    if not ca_bundle.lstrip().startswith("-----BEGIN"):
        return ca_bundle
    with _files_lock:
        cached = _ca_files.get(ca_bundle)
        if cached and Path(cached).exists():
            return cached
        path = Path(tempfile.mkdtemp(prefix="aisp-ca-")) / "ca.pem"  # created 0700
        _write_private(path, ca_bundle)
        _ca_files[ca_bundle] = str(path)
        return _ca_files[ca_bundle]


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
