"""Start and stop the sandbox: the mTLS API listener and the plain-HTTP screens listener, in background threads.

>>> from sandbox.server import SandboxConfig, start_sandbox
>>> with start_sandbox(SandboxConfig(port=0, screens_port=0, certs_dir=tmp_path)) as sandbox:  # doctest: +SKIP
...     sandbox.api_url("13807")        # https://127.0.0.1:54321/13807
...     sandbox.authorize_url("13807")  # http://127.0.0.1:54322/13807
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.api import ApiApp
from sandbox.certs import DEFAULT_CLIENT_ID, CertificatePaths, ensure_certificates
from sandbox.core import SandboxCore
from sandbox.screens import ScreensApp
from sandbox.signature import ResponseSeal
from sandbox.store import Settings, TppRegistration
from sandbox.web import HttpServer

DEFAULT_REDIRECT_URI = "https://myAPP.fr/Home/OAuth2Callback"
DEFAULT_CERTS_DIR = Path(".sandbox") / "certs"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
ADMIN_ENV = "SANDBOX_ADMIN"


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """How to run the sandbox.

    Parameters
    ----------
    host
        Loopback address to bind, and the host of every URL the sandbox hands out.
    bind_all
        Also listen on every interface (``0.0.0.0``, or ``::`` for an IPv6 ``host``), so that containers
        (``sam local``) reach the sandbox through ``host.docker.internal``. URLs keep ``host``; the admin API still
        answers loopback clients only. Off by default: the sandbox's TPP keys are test keys, but its quotas and
        tokens should not be reachable from the network without asking.
    port, screens_port
        HTTPS (API) and HTTP (login screens) ports; 0 picks free ports.
    certs_dir
        Where the local PKI lives (created or reused, see :mod:`sandbox.certs`).
    client_id
        The registered TPP (also the QWAC/QSealC ``organizationIdentifier`` and the signature keyId).
    redirect_uris
        Registered redirect URIs (exact match).
    latency_ms
        Latency added to every token and AISP call.
    admin
        Enable ``/_admin``; ``None`` reads ``SANDBOX_ADMIN=1`` from the environment at start.
    settings
        Token lifetimes, page size, quotas.
    """

    host: str = "127.0.0.1"
    bind_all: bool = False
    port: int = 8443
    screens_port: int = 8080
    certs_dir: Path = DEFAULT_CERTS_DIR
    client_id: str = DEFAULT_CLIENT_ID
    redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,)
    latency_ms: int = 0
    admin: bool | None = None
    settings: Settings = field(default_factory=Settings)


class RunningSandbox:
    """A started sandbox; stop it with :meth:`stop` or use it as a context manager."""

    def __init__(self, *, core: SandboxCore, api: HttpServer, screens: HttpServer, certs: CertificatePaths) -> None:
        self.core = core
        self.certs = certs
        self._api = api
        self._screens = screens
        self.credentials: dict[str, Any] = json.loads(certs.credentials.read_text())

    @property
    def api_origin(self) -> str:
        """``https://host:port`` of the API listener."""
        return self._api.origin

    @property
    def screens_origin(self) -> str:
        """``http://host:port`` of the login screens listener."""
        return self._screens.origin

    def api_url(self, bank_code: str) -> str:
        """Base URL of one bank's API (``{api_url}/stet/psd2/oauth/token``, ``{api_url}/stet/psd2/v1/accounts``)."""
        return f"{self.api_origin}/{bank_code}"

    def authorize_url(self, bank_code: str) -> str:
        """Base URL of one bank's login screens (``{authorize_url}/stet/psd2/oauth/authorize``)."""
        return f"{self.screens_origin}/{bank_code}"

    @property
    def admin_url(self) -> str:
        """Base of the admin API (answers only when enabled)."""
        return f"{self.api_origin}/_admin"

    @property
    def ca_path(self) -> Path:
        """The test CA to trust."""
        return self.certs.ca_cert

    @property
    def credentials_path(self) -> Path:
        """``bank-credentials.json``: the gateway's secret for this TPP."""
        return self.certs.credentials

    @property
    def client_cert(self) -> tuple[str, str]:
        """``(qwac.pem, qwac-key.pem)``, ready for ``requests(cert=...)``."""
        return str(self.certs.qwac_cert), str(self.certs.qwac_key)

    def stop(self) -> None:
        """Stop both listeners, end pending hangs and close every connection."""
        self.core.stop_event.set()
        self._screens.stop()
        self._api.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _server_context(certs: CertificatePaths) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.server_cert, certs.server_key)
    context.load_verify_locations(cafile=certs.ca_cert)
    # Optional at the TLS level so that a missing certificate gets a STET 401 rather than a handshake failure;
    # every bank endpoint then requires a verified one.
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _public_key_pem(certificate: Path) -> str:
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    return (
        cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _admin_enabled(config: SandboxConfig) -> bool:
    if config.admin is not None:
        return config.admin
    return os.environ.get(ADMIN_ENV, "") == "1"


def listen_address(config: SandboxConfig) -> str:
    """The address both listeners bind: ``config.host``, or every interface of its family with ``bind_all``."""
    if not config.bind_all:
        return config.host
    return "::" if ":" in config.host else "0.0.0.0"  # noqa: S104 - opt-in, for sam local containers


def start_sandbox(config: SandboxConfig | None = None) -> RunningSandbox:
    """Create or reuse the certificates, bind both listeners (loopback unless ``bind_all``), serve in threads.

    Raises
    ------
    ValueError
        ``config.host`` is not a loopback address.
    OSError
        A port is already in use.
    """
    config = config or SandboxConfig()
    if config.host not in LOOPBACK_HOSTS:
        raise ValueError("the sandbox binds loopback only (127.0.0.1, ::1 or localhost)")
    certs = ensure_certificates(config.certs_dir, client_id=config.client_id)
    core = SandboxCore(
        settings=config.settings,
        tpp=TppRegistration(
            client_id=config.client_id,
            redirect_uris=tuple(config.redirect_uris),
            key_id=config.client_id,
            qseal_public_key_pem=_public_key_pem(certs.qseal_cert),
        ),
        admin_enabled=_admin_enabled(config),
        base_latency_ms=config.latency_ms,
        response_seal=ResponseSeal(
            private_key_pem=certs.bank_signing_key.read_text(), certificate_pem=certs.bank_signing_cert.read_text()
        ),
    )
    bind = listen_address(config)
    api = HttpServer((bind, config.port), ApiApp(core), _server_context(certs), origin_host=config.host)
    try:
        screens = HttpServer((bind, config.screens_port), ScreensApp(core), origin_host=config.host)
    except OSError:
        api.server_close()
        raise
    core.screens_origin = screens.origin
    api.start("sandbox-api")
    screens.start("sandbox-screens")
    return RunningSandbox(core=core, api=api, screens=screens, certs=certs)
