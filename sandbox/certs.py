"""Local PKI of the sandbox: a test CA, the bank's TLS server certificate and a TPP's QWAC + QSealC pair.

``python -m sandbox.certs DIR [--client-id PSDFR-ACPR-13807]`` creates (or reuses) in ``DIR``:

============================  ==================================================================================
``ca.pem`` / ``ca-key.pem``   the test CA; trust ``ca.pem`` to call the sandbox (``verify=``)
``server.pem`` / ``-key``     TLS server certificate; SAN 127.0.0.1, ::1, localhost, host.docker.internal
``qwac.pem`` / ``-key``       the TPP's client certificate (mTLS); subject ``organizationIdentifier`` = client_id
``qseal.pem`` / ``-key``      the TPP's seal certificate; its key signs requests (``Signature``)
``bank-signing.pem`` / ``-key`` the bank's seal certificate; its key signs the API's answers, as BPCE's does
``bank-credentials.json``     the gateway's secret: client_id, QWAC cert/key, QSealC key, keyId (= client_id), and
                              the bank signing certificate pinned for every sandbox bank code
============================  ==================================================================================

Existing files are reused as long as they are valid and match the client_id (and, for the server, the names);
private keys are written 0600. ``host.docker.internal`` is how ``sam local`` containers reach the sandbox.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.banks import BANKS

DEFAULT_CLIENT_ID = "PSDFR-ACPR-13807"
# The organizationIdentifier of the bank's own seal certificate (BPCE SA's, as an eIDAS PSD2 identifier would read).
BANK_ORGANIZATION_ID = "PSDFR-ACPR-30007"
KEY_SIZE = 2048
CA_DAYS = 3650
LEAF_DAYS = 730
RENEW_BEFORE = dt.timedelta(days=7)
PRIVATE_MODE = 0o600


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificatePaths:
    """Where :func:`ensure_certificates` put each file."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    qwac_cert: Path
    qwac_key: Path
    qseal_cert: Path
    qseal_key: Path
    bank_signing_cert: Path
    bank_signing_key: Path
    credentials: Path

    @classmethod
    def in_directory(cls, directory: Path) -> CertificatePaths:
        """The conventional file names inside ``directory``."""
        return cls(
            directory=directory,
            ca_cert=directory / "ca.pem",
            ca_key=directory / "ca-key.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server-key.pem",
            qwac_cert=directory / "qwac.pem",
            qwac_key=directory / "qwac-key.pem",
            qseal_cert=directory / "qseal.pem",
            qseal_key=directory / "qseal-key.pem",
            bank_signing_cert=directory / "bank-signing.pem",
            bank_signing_key=directory / "bank-signing-key.pem",
            credentials=directory / "bank-credentials.json",
        )


@dataclass(frozen=True, slots=True)
class _Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(PRIVATE_MODE)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load(cert_path: Path, key_path: Path) -> _Issued | None:
    """Load a certificate and its key if both exist, match and stay valid for a while; else ``None``."""
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return None
    key_path.chmod(PRIVATE_MODE)
    return _Issued(cert, key)


def _save(issued: _Issued, cert_path: Path, key_path: Path) -> _Issued:
    _write_private(key_path, _key_pem(issued.key))
    cert_path.write_bytes(_cert_pem(issued.cert))
    return issued


def _name(common_name: str, organization: str, organization_id: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ]
    if organization_id is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, organization_id))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _new_ca() -> _Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    name = _name("89C3 Sandbox Test CA", "89C3 Offline Sandbox")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _issue(
    ca: _Issued,
    subject: x509.Name,
    *,
    usage: x509.ObjectIdentifier | None,
    seal: bool = False,
    san: x509.SubjectAlternativeName | None = None,
) -> _Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=seal,
                key_encipherment=not seal,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return _Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _organization_id(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    return str(values[0].value) if values else None


def _issued_by(issued: _Issued, ca: _Issued) -> bool:
    if issued.cert.issuer != ca.cert.subject:
        return False
    issued.cert.verify_directly_issued_by(ca.cert)
    return True


def _leaf(
    ca: _Issued,
    cert_path: Path,
    key_path: Path,
    *,
    expected_org_id: str | None,
    make: Callable[[], _Issued],
    expected_san: x509.SubjectAlternativeName | None = None,
) -> _Issued:
    existing = _load(cert_path, key_path)
    if (
        existing is not None
        and _still_fits(existing, ca, expected_org_id)
        and (expected_san is None or _san(existing.cert) == expected_san)
    ):
        return existing
    return _save(make(), cert_path, key_path)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _still_fits(existing: _Issued, ca: _Issued, expected_org_id: str | None) -> bool:
    try:
        issued = _issued_by(existing, ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return issued and (expected_org_id is None or _organization_id(existing.cert) == expected_org_id)


def ensure_certificates(directory: Path, *, client_id: str = DEFAULT_CLIENT_ID) -> CertificatePaths:
    """Create the sandbox PKI in ``directory``, reusing every file that is still valid.

    Parameters
    ----------
    directory
        Created if missing.
    client_id
        The TPP's client_id; it becomes the ``organizationIdentifier`` of the QWAC and QSealC subjects and the
        ``keyId`` the TPP signs with (BPCE uses the client_id as keyId).

    Returns
    -------
    CertificatePaths
        The path of every file.
    """
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths.in_directory(directory)
    ca = _load(paths.ca_cert, paths.ca_key) or _save(_new_ca(), paths.ca_cert, paths.ca_key)
    san = x509.SubjectAlternativeName(
        [
            x509.IPAddress(ip_address("127.0.0.1")),
            x509.IPAddress(ip_address("::1")),
            x509.DNSName("localhost"),
            # Containers (sam local) reach the host's sandbox by this name.
            x509.DNSName("host.docker.internal"),
        ]
    )
    _leaf(
        ca,
        paths.server_cert,
        paths.server_key,
        expected_org_id=None,
        make=lambda: _issue(
            ca, _name("localhost", "89C3 Offline Sandbox"), usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san
        ),
        expected_san=san,
    )
    qwac = _leaf(
        ca,
        paths.qwac_cert,
        paths.qwac_key,
        expected_org_id=client_id,
        make=lambda: _issue(
            ca, _name(f"{client_id} QWAC", "Sandbox TPP", client_id), usage=ExtendedKeyUsageOID.CLIENT_AUTH
        ),
    )
    qseal = _leaf(
        ca,
        paths.qseal_cert,
        paths.qseal_key,
        expected_org_id=client_id,
        make=lambda: _issue(ca, _name(f"{client_id} QSealC", "Sandbox TPP", client_id), usage=None, seal=True),
    )
    bank_seal = _leaf(
        ca,
        paths.bank_signing_cert,
        paths.bank_signing_key,
        expected_org_id=BANK_ORGANIZATION_ID,
        make=lambda: _issue(
            ca,
            _name("89C3 Offline Sandbox API seal", "89C3 Offline Sandbox", BANK_ORGANIZATION_ID),
            usage=None,
            seal=True,
        ),
    )
    _write_credentials(paths.credentials, client_id=client_id, qwac=qwac, qseal=qseal, bank_seal=bank_seal)
    return paths


def _write_credentials(path: Path, *, client_id: str, qwac: _Issued, qseal: _Issued, bank_seal: _Issued) -> None:
    bank_pem = _cert_pem(bank_seal.cert).decode()
    content = json.dumps(
        {
            "client_id": client_id,
            "qwac_cert_pem": _cert_pem(qwac.cert).decode(),
            "qwac_key_pem": _key_pem(qwac.key).decode(),
            "qseal_key_pem": _key_pem(qseal.key).decode(),
            "qseal_key_id": client_id,
            "bank_signing_certificates": {bank.code: [bank_pem] for bank in BANKS},
        },
        indent=2,
    ).encode()
    if path.is_file() and path.read_bytes() == content:
        path.chmod(PRIVATE_MODE)
        return
    _write_private(path, content)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m sandbox.certs DIR [--client-id ID]``."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.certs", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    args = parser.parse_args(argv)
    paths = ensure_certificates(args.directory, client_id=args.client_id)
    for label, path in (
        ("CA certificate", paths.ca_cert),
        ("server certificate", paths.server_cert),
        ("TPP QWAC (client certificate)", paths.qwac_cert),
        ("TPP QWAC key", paths.qwac_key),
        ("TPP QSealC certificate", paths.qseal_cert),
        ("TPP QSealC key", paths.qseal_key),
        ("bank response-signing certificate", paths.bank_signing_cert),
        ("gateway credentials (secret JSON)", paths.credentials),
    ):
        sys.stdout.write(f"{label:36} {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
