"""Certificates, banks, personas and the transaction generator, checked without a server."""

from __future__ import annotations

import json
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.banks import BANKS, french_iban, iban_is_valid, rib_key
from sandbox.certs import CertificatePaths, ensure_certificates, main
from sandbox.history import HISTORY_DAYS, account_history
from sandbox.personas import PERSONAS, Account
from tests.sandbox.helpers import MARC_IBANS, TECHN_IBAN

pytestmark = pytest.mark.integration

TODAY = date(2026, 11, 24)


# --- certificates --------------------------------------------------------------------------------------------


def _org_id(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value)


def test_certs_creates_the_pki_and_the_gateway_secret(certs_dir: Path) -> None:
    paths = CertificatePaths.in_directory(certs_dir)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    qwac = x509.load_pem_x509_certificate(paths.qwac_cert.read_bytes())
    qseal = x509.load_pem_x509_certificate(paths.qseal_cert.read_bytes())
    bank_seal = x509.load_pem_x509_certificate(paths.bank_signing_cert.read_bytes())
    secret = json.loads(paths.credentials.read_text())

    for leaf in (server, qwac, qseal, bank_seal):
        leaf.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1"}
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in qwac.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert _org_id(qwac) == _org_id(qseal) == "PSDFR-ACPR-13807"
    assert list(secret) == [
        "client_id",
        "qwac_cert_pem",
        "qwac_key_pem",
        "qseal_key_pem",
        "qseal_key_id",
        "bank_signing_certificates",
    ]
    # The bank's answer-signing certificate, pinned for every bank code the sandbox serves
    assert secret["bank_signing_certificates"] == {
        code: [paths.bank_signing_cert.read_text()] for code in ("13807", "10207", "17515")
    }
    assert secret["client_id"] == secret["qseal_key_id"] == "PSDFR-ACPR-13807"
    assert secret["qwac_cert_pem"] == paths.qwac_cert.read_text()
    assert secret["qseal_key_pem"] == paths.qseal_key.read_text()
    keys = (paths.ca_key, paths.server_key, paths.qwac_key, paths.qseal_key, paths.bank_signing_key)
    for private in (*keys, paths.credentials):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_certs_are_reused_on_a_second_run(certs_dir: Path) -> None:
    before = {path.name: path.read_bytes() for path in certs_dir.iterdir()}

    ensure_certificates(certs_dir)

    assert {path.name: path.read_bytes() for path in certs_dir.iterdir()} == before


def test_a_server_certificate_without_the_container_name_is_reissued(tmp_path: Path) -> None:
    # Given a sandbox PKI whose server certificate predates the host.docker.internal name
    first = ensure_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(first.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(first.ca_key.read_bytes(), password=None)
    server_key = serialization.load_pem_private_key(first.server_key.read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    assert isinstance(server_key, rsa.RSAPrivateKey)
    now = datetime.now(UTC)
    old = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    first.server_cert.write_bytes(old.public_bytes(serialization.Encoding.PEM))

    # When the sandbox starts again
    second = ensure_certificates(tmp_path)

    # Then the server certificate is reissued with every name, and the CA is kept
    server = x509.load_pem_x509_certificate(second.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "host.docker.internal"]
    server.verify_directly_issued_by(ca)


def test_another_client_id_reissues_only_the_tpp_certificates(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    ca_before, server_before = first.ca_cert.read_bytes(), first.server_cert.read_bytes()

    second = ensure_certificates(tmp_path, client_id="PSDFR-ACPR-12345")

    assert second.ca_cert.read_bytes() == ca_before
    assert second.server_cert.read_bytes() == server_before
    assert _org_id(x509.load_pem_x509_certificate(second.qwac_cert.read_bytes())) == "PSDFR-ACPR-12345"
    assert json.loads(second.credentials.read_text())["qseal_key_id"] == "PSDFR-ACPR-12345"


def test_a_lost_ca_key_reissues_everything(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    qwac_before = first.qwac_cert.read_bytes()
    first.ca_key.unlink()

    second = ensure_certificates(tmp_path)

    assert second.qwac_cert.read_bytes() != qwac_before
    x509.load_pem_x509_certificate(second.qwac_cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(second.ca_cert.read_bytes())
    )


def test_certs_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "pki")]) == 0

    out = capsys.readouterr().out
    assert str(tmp_path / "pki" / "bank-credentials.json") in out
    assert (tmp_path / "pki" / "ca.pem").is_file()


# --- banks and personas --------------------------------------------------------------------------------------


def test_the_seed_ibans_come_out_of_the_iban_builder() -> None:
    assert french_iban("13807", "00804", "30019654051") == MARC_IBANS[0]
    assert french_iban("13807", "00804", "30019654091") == TECHN_IBAN
    assert rib_key("13807", "00804", "30019654051") == "58"
    assert not iban_is_valid(MARC_IBANS[0][:-1] + "9")


def test_every_persona_account_has_a_valid_iban_of_its_bank_and_unique_ids() -> None:
    bank_codes = {bank.code for bank in BANKS}
    assert {"13807", "10207", "17515"} <= bank_codes
    for code, personas in PERSONAS.items():
        assert code in bank_codes
        resource_ids = [account.resource_id for p in personas for account in p.accounts]
        assert len(resource_ids) == len(set(resource_ids))
        assert len({p.identifier for p in personas}) == len(personas)
        for persona in personas:
            for account in persona.accounts:
                if account.iban is not None:
                    assert iban_is_valid(account.iban), account.iban
                    assert account.iban[4:9] == code
                else:
                    assert account.cash_account_type == "CARD"
                    assert account.linked_account in {a.resource_id for a in persona.accounts}
                assert persona.initial_consent.balances <= {a.key for a in persona.accounts}


def test_13807_is_shared_by_bpgo_and_cmmgo() -> None:
    bank = next(bank for bank in BANKS if bank.code == "13807")

    assert [brand.short_name for brand in bank.brands] == ["BPGO", "CMMGO"]


# --- transaction history -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "account",
    [
        a
        for personas in PERSONAS.values()
        for p in personas
        for a in p.accounts
        if a.key in p.initial_consent.transactions
    ]
    + [a for p in PERSONAS["13807"] if p.identifier == "D0999993I0" for a in p.accounts],
    ids=lambda account: account.resource_id,
)
def test_every_consentable_account_has_a_rich_deterministic_history(account: Account) -> None:
    history = account_history(account.resource_id, account.profile, TODAY)

    assert len(history) >= 300
    assert {e.credit_debit for e in history} == {"CRDT", "DBIT"} or account.cash_account_type == "CARD"
    assert {e.pending for e in history} == {True, False}
    assert min(e.imputation_date for e in history) == TODAY - timedelta(days=HISTORY_DAYS - 1)
    assert all(len(e.remittance) >= 1 and all(len(line) <= 140 for line in e.remittance) for e in history)
    assert all(e.transaction_date <= e.imputation_date <= e.value_date for e in history)
    assert len({e.entry_reference for e in history}) == len(history)
    assert account_history.__wrapped__(account.resource_id, account.profile, TODAY) == history


def test_the_window_slides_but_a_day_keeps_its_transactions() -> None:
    account = PERSONAS["13807"][0].accounts[0]

    today = account_history(account.resource_id, account.profile, TODAY)
    tomorrow = account_history(account.resource_id, account.profile, TODAY + timedelta(days=1))

    shared = TODAY - timedelta(days=10)
    assert [e for e in today if e.imputation_date == shared] == [e for e in tomorrow if e.imputation_date == shared]
    assert max(e.imputation_date for e in tomorrow) == TODAY + timedelta(days=1)
