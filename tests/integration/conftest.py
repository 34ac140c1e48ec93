"""Fixtures for integration tests: a real local HTTPS bank with mTLS (trustme CA, pytest-httpserver) for the client,
and the offline 89C3 sandbox for the gateway's handlers end to end."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aisp.signing import BankSignatureAuth, SignatureError, verify_request
from aisp.stet import BankClient
from sandbox.server import RunningSandbox, SandboxConfig, start_sandbox
from sandbox.store import Settings

BANK_CODE = "13807"
CLIENT_ID = "PSDFR-ACPR-13807"
API_PREFIX = "/stet/psd2/v1.4.2"
REQUIRED_SIGNED = ("(request-target)", "date", "digest", "x-request-id")


@dataclass(frozen=True)
class BankTls:
    """Paths and contexts of the test PKI: one CA for the bank's server cert and the TPP's client cert (QWAC)."""

    ca_path: str
    client_cert: tuple[str, str]
    server_context: ssl.SSLContext


@dataclass(frozen=True)
class SigningKeys:
    """The TPP's QSealC-like signing key pair."""

    key_id: str
    private_pem: str
    public_pem: str


@dataclass
class Seen:
    """One request as the bank saw it, with the outcome of server-side signature verification."""

    method: str
    raw_uri: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]
    key_id: str | None
    signature_error: str | None

    def header(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        return lowered.get(name.lower())


@dataclass
class BankRecorder:
    """Records requests hitting the fake bank and verifies their signature (when signed) with verify_request."""

    origin: str
    public_pem: str
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, responder: Callable[[Request, int], Response]) -> Callable[[Request], Response]:
        """A pytest-httpserver handler: record, verify, then answer with ``responder(request, call_index)``."""

        def handler(request: Request) -> Response:
            raw_uri = request.environ.get("RAW_URI") or request.full_path
            headers = dict(request.headers.items())
            body = request.get_data()
            key_id: str | None = None
            error: str | None = None
            if any(k.lower() == "signature" for k in headers):
                try:
                    key_id = verify_request(
                        request.method,
                        self.origin + raw_uri,
                        headers,
                        body,
                        public_key_pem=self.public_pem,
                        required_headers=REQUIRED_SIGNED,
                    )
                except SignatureError as exc:
                    error = exc.reason
            form = dict(request.form.items()) if request.mimetype == "application/x-www-form-urlencoded" else {}
            with self.lock:
                index = len(self.seen)
                self.seen.append(Seen(request.method, raw_uri, headers, body, form, key_id, error))
            if error is not None:
                return Response('{"status":401,"message":"bad signature"}', status=401, content_type="application/json")
            return responder(request, index)

        return handler


@pytest.fixture(scope="session")
def bank_tls(tmp_path_factory: pytest.TempPathFactory) -> BankTls:
    # A private CA issues the server cert (127.0.0.1) and the TPP client cert; the server requires a client cert.
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("tpp.example.test")
    directory = tmp_path_factory.mktemp("pki")
    ca_path = directory / "ca.pem"
    cert_path = directory / "client-cert.pem"
    key_path = directory / "client-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    client_cert.cert_chain_pems[0].write_to_path(str(cert_path))
    client_cert.private_key_pem.write_to_path(str(key_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return BankTls(ca_path=str(ca_path), client_cert=(str(cert_path), str(key_path)), server_context=context)


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return SigningKeys(key_id=CLIENT_ID, private_pem=private_pem, public_pem=public_pem)


@pytest.fixture(scope="session")
def bank_server(bank_tls: BankTls) -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=bank_tls.server_context, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def bank(bank_server: HTTPServer) -> Iterator[HTTPServer]:
    """The shared HTTPS bank, reset around each test."""
    bank_server.clear()
    yield bank_server
    bank_server.clear()


@pytest.fixture
def origin(bank: HTTPServer) -> str:
    return f"https://127.0.0.1:{bank.port}"


@pytest.fixture
def base_url(origin: str) -> str:
    """Bank origin plus the offline-sandbox style path prefix."""
    return f"{origin}/{BANK_CODE}"


@pytest.fixture
def recorder(origin: str, signing_keys: SigningKeys) -> BankRecorder:
    return BankRecorder(origin=origin, public_pem=signing_keys.public_pem)


@dataclass
class FakeSleep:
    """Records backoff delays instead of sleeping."""

    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def make_client(
    base_url: str, bank_tls: BankTls, signing_keys: SigningKeys, fake_sleep: FakeSleep
) -> Iterator[Callable[..., BankClient]]:
    """Factory for a BankClient wired to the local bank with mTLS and the test signing key; sessions closed after."""
    sessions: list[requests.Session] = []

    def factory(**overrides: Any) -> BankClient:
        session = requests.Session()
        session.trust_env = False
        sessions.append(session)
        kwargs: dict[str, Any] = {
            "bank_code": BANK_CODE,
            "base_url": base_url,
            "api_prefix": API_PREFIX,
            "client_id": CLIENT_ID,
            "auth": BankSignatureAuth(key_id=signing_keys.key_id, private_key_pem=signing_keys.private_pem),
            "cert": bank_tls.client_cert,
            "verify": bank_tls.ca_path,
            "session": session,
            "timeout": (2.0, 5.0),
            "max_get_retries": 2,
            "sleep": fake_sleep,
        }
        kwargs.update(overrides)
        return BankClient(**kwargs)

    yield factory
    for session in sessions:
        session.close()


# ----------------------------------------------------------------------------------------------------------------
# The gateway's handlers against the offline 89C3 sandbox (helpers: tests/integration/journey.py)
# ----------------------------------------------------------------------------------------------------------------


def start_module_sandbox(tmp_path_factory: pytest.TempPathFactory, settings: Settings | None = None) -> RunningSandbox:
    """An offline 89C3 bank on free ports (HTTPS + mTLS API, login screens, admin switches) that redirects to the
    journey's callback; ``settings``: other page size, lifetimes or quotas than BPCE's."""
    from tests.integration.journey import CALLBACK_URL

    config = SandboxConfig(
        port=0,
        screens_port=0,
        certs_dir=tmp_path_factory.mktemp("sandbox-certs"),
        admin=True,
        redirect_uris=(CALLBACK_URL,),
        settings=settings or Settings(),
    )
    return start_sandbox(config)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One offline 89C3 bank per test module."""
    with start_module_sandbox(tmp_path_factory) as running:
        yield running


@pytest.fixture
def admin(sandbox: RunningSandbox) -> Iterator[requests.Session]:
    """The sandbox's admin API (fault switches, token expiry, clock), reset around each test."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.ca_path)
    assert session.post(f"{sandbox.admin_url}/reset", timeout=5).status_code == 204
    yield session
    session.post(f"{sandbox.admin_url}/reset", timeout=5)
    session.close()


@pytest.fixture
def gateway(aws, sandbox: RunningSandbox, admin, monkeypatch) -> Iterator[Any]:
    """The deployed wiring pointed at the sandbox (BANK_ENVIRONMENT=local), its credentials as the secret, and the
    bank gateway wrapped to count OAuth calls. The account routes build their services over the same wiring."""
    import dataclasses
    import json

    from aisp import wiring
    from aisp.stet.gateway import StetBankGateway
    from tests.conftest import SECRET_NAME, clear_gateway_caches
    from tests.fakes import CountingBankGateway

    monkeypatch.setenv("BANK_ENVIRONMENT", "local")
    monkeypatch.setenv("BANK_BASE_URL_TEMPLATE", sandbox.api_origin + "/{bank_code}")
    monkeypatch.setenv("BANK_AUTHORIZE_URL_TEMPLATE", sandbox.screens_origin + "/{bank_code}")
    monkeypatch.setenv("BANK_CA_BUNDLE", str(sandbox.ca_path))
    monkeypatch.setenv("BANK_TIMEOUT_SECONDS", "5")
    aws.secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(sandbox.credentials))
    clear_gateway_caches()
    services = dataclasses.replace(
        wiring.connection_services(), bank=CountingBankGateway(StetBankGateway(wiring.bank_clients))
    )
    wiring.connection_services.provide(services)
    yield services
    clear_gateway_caches()
