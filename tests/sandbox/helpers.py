"""A test TPP for the sandbox: a browser session for the login screens and an mTLS session for the API.

AISP calls are signed with the gateway's own signer (``aisp.signing.sign_request``) using the QSealC key from
``bank-credentials.json``, exactly as the gateway will do. :func:`settlement_examples` finds, for a sandbox day, one
pending transaction of each fate (``sandbox/README.md``, How the history evolves) for tests of what changes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aisp.signing import sign_request
from sandbox.clock import paris
from sandbox.history import Fate, Settlement, day_settlements
from sandbox.personas import PERSONAS, HistoryProfile
from sandbox.server import RunningSandbox

CLIENT_ID = "PSDFR-ACPR-13807"
REDIRECT_URI = "https://tpp.example/oauth/callback"
OTHER_REDIRECT_URI = "https://tpp.example/other-callback"
OTP = "12345678"
MARC = "D0999990I0"
TECHN = "D0999993I0"
SOPHIE = "D0999991I0"
PAUL = "D0999994I0"
JULIE = "D0999995I0"
BRUNO = "D0999996I0"
LEA = "D1020701I0"
HUGO = "D1751501I0"
MARC_IBANS = ("FR7613807008043001965405158", "FR7613807008043001965405255", "FR7613807008043001965405352")
MARC_ACCOUNTS = ("038-CPT30019654051", "038-CPT30019654052", "038-CPT30019654053")
TECHN_IBAN = "FR7613807008043001965409135"
TECHN_ACCOUNT = "038-CPT30019654091"
_FLOW_RE = re.compile(r"name='flow' value='([^']+)'")


def flow_id(html: str) -> str:
    """The hidden flow id of a login screen."""
    match = _FLOW_RE.search(html)
    assert match is not None, "no flow id in the page"
    return match.group(1)


def query_of(location: str) -> dict[str, str]:
    """Query parameters of a redirect Location."""
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify=
    return session


class SandboxClient:
    """Drives one running sandbox like a TPP (and its user's browser) would."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.key_id: str = sandbox.credentials["qseal_key_id"]
        self.key_pem: str = sandbox.credentials["qseal_key_pem"]
        self.browser = _session()
        self.api = _session()
        self.api.cert = sandbox.client_cert
        self.api.verify = str(sandbox.ca_path)
        self.anonymous = _session()  # TLS without a client certificate
        self.anonymous.verify = str(sandbox.ca_path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.browser.close()
        self.api.close()
        self.anonymous.close()

    # --- admin ---------------------------------------------------------------------------------------------

    def admin(self, method: str, name: str, body: dict[str, Any] | None = None) -> requests.Response:
        """Call ``/_admin/{name}`` (no client certificate needed)."""
        return self.anonymous.request(method, f"{self.sandbox.admin_url}/{name}", json=body, timeout=5)

    def reset(self) -> None:
        """Back to the start-up state."""
        assert self.admin("POST", "reset").status_code == 204

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock."""
        assert self.admin("POST", "clock", {"advance_seconds": seconds}).status_code == 200

    def now(self) -> dt.datetime:
        """The sandbox's time."""
        state = self.admin("GET", "state")
        assert state.status_code == 200, state.text
        return dt.datetime.fromisoformat(state.json()["now"])

    def today(self) -> dt.date:
        """The sandbox's calendar day (Europe/Paris), the day its history is listed on."""
        return self.now().astimezone(paris()).date()

    def travel_to(self, day: dt.date) -> None:
        """Set the sandbox clock to noon (Europe/Paris) of ``day``: far from midnight, so a test's days do not
        move under it."""
        noon = dt.datetime.combine(day, dt.time(12), paris())
        self.advance_clock((noon - self.now()).total_seconds())

    # --- screens -------------------------------------------------------------------------------------------

    def authorize_endpoint(self, bank: str = "13807") -> str:
        """The login screens' authorize URL of a bank."""
        return f"{self.sandbox.authorize_url(bank)}/stet/psd2/oauth/authorize"

    def authorize(self, bank: str = "13807", **params: str) -> requests.Response:
        """``GET /authorize`` with the seed's parameters, overridable."""
        query = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "aisp",
            "state": "state-123",
            **params,
        }
        return self.browser.get(self.authorize_endpoint(bank), params=query, allow_redirects=False, timeout=5)

    def screen(self, flow: str, bank: str = "13807", **fields: str) -> requests.Response:
        """Post one login screen."""
        return self.browser.post(
            self.authorize_endpoint(bank), data={"flow": flow, **fields}, allow_redirects=False, timeout=5
        )

    def login(
        self,
        identifier: str,
        *,
        bank: str = "13807",
        otp: str = OTP,
        redirect_uri: str = REDIRECT_URI,
        state: str = "state-123",
        **params: str,
    ) -> str:
        """Go through the three screens, accept, and return the authorization code (``params``: more authorize
        parameters, e.g. PKCE's)."""
        page = self.authorize(bank, redirect_uri=redirect_uri, state=state, **params)
        assert page.status_code == 200, page.text
        flow = flow_id(page.text)
        assert self.screen(flow, bank, identifier=identifier).status_code == 200
        assert self.screen(flow, bank, otp=otp).status_code == 200
        accepted = self.screen(flow, bank, decision="accept")
        assert accepted.status_code == 302, accepted.text
        params = query_of(accepted.headers["Location"])
        assert params["state"] == state
        return params["code"]

    # --- token endpoint ------------------------------------------------------------------------------------

    def token_endpoint(self, bank: str = "13807", name: str = "token") -> str:
        """``{api}/stet/psd2/oauth/{name}``."""
        return f"{self.sandbox.api_url(bank)}/stet/psd2/oauth/{name}"

    def token(self, bank: str = "13807", **form: str) -> requests.Response:
        """``POST /token`` with ``client_id`` filled in."""
        return self.api.post(self.token_endpoint(bank), data={"client_id": CLIENT_ID, **form}, timeout=5)

    def exchange(
        self, code: str, *, bank: str = "13807", redirect_uri: str = REDIRECT_URI, **form: str
    ) -> requests.Response:
        """Authorization-code grant (``form``: more fields, e.g. ``code_verifier``)."""
        return self.token(bank, grant_type="authorization_code", code=code, redirect_uri=redirect_uri, **form)

    def refresh(self, refresh_token: str, *, bank: str = "13807") -> requests.Response:
        """Refresh-token grant."""
        return self.token(bank, grant_type="refresh_token", refresh_token=refresh_token)

    def connect(self, identifier: str, *, bank: str = "13807") -> dict[str, Any]:
        """Screens + code exchange: the token response."""
        response = self.exchange(self.login(identifier, bank=bank), bank=bank)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    # --- AISP ----------------------------------------------------------------------------------------------

    def url(self, path: str, *, bank: str = "13807", version: str = "v1") -> str:
        """Absolute URL of an AISP path (``/accounts``...) or of a link href (``/13807/stet/...``)."""
        if path.startswith(f"/{bank}/"):
            return f"{self.sandbox.api_origin}{path}"
        return f"{self.sandbox.api_url(bank)}/stet/psd2/{version}{path}"

    def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        bank: str = "13807",
        version: str = "v1",
        body: bytes = b"",
        psu_ip: str | None = None,
        headers: dict[str, str] | None = None,
        signed_headers: list[str] | None = None,
        sign: bool = True,
        key_pem: str | None = None,
        key_id: str | None = None,
        cert: tuple[str, str] | None | Literal["registered"] = "registered",
    ) -> requests.Response:
        """A signed AISP call, every part overridable to build rejections.

        ``cert`` is the registered QWAC by default, ``None`` for no client certificate, or another ``(cert, key)``.
        """
        url = self.url(path, bank=bank, version=version)
        request_headers = {"X-Request-ID": str(uuid.uuid4()), "Accept": "application/json"}
        if token is not None:
            request_headers["Authorization"] = f"Bearer {token}"
        if body:
            request_headers["Content-Type"] = "application/json"
        if psu_ip is not None:
            request_headers["PSU-IP-Address"] = psu_ip
        request_headers.update(headers or {})
        if sign:
            request_headers.update(
                sign_request(
                    method,
                    url,
                    request_headers,
                    body,
                    key_id=key_id or self.key_id,
                    private_key_pem=key_pem or self.key_pem,
                    signed_headers=signed_headers,
                )
            )
        session = self.anonymous if cert is None else self.api
        client_cert = cert if isinstance(cert, tuple) else None
        return session.request(method, url, headers=request_headers, data=body or None, timeout=5, cert=client_cert)

    def get(self, path: str, token: str | None, **kwargs: Any) -> requests.Response:
        """Signed GET."""
        return self.call("GET", path, token, **kwargs)

    def put_consents(self, token: str, consent: dict[str, Any], **kwargs: Any) -> requests.Response:
        """Signed PUT /consents."""
        return self.call("PUT", "/consents", token, body=json.dumps(consent).encode(), **kwargs)


def consent_body(
    balances: tuple[str, ...] = (),
    transactions: tuple[str, ...] = (),
    *,
    psu_identity: bool = False,
    trusted_beneficiaries: bool = False,
) -> dict[str, Any]:
    """A PUT /consents body as in the 89C3 guide."""
    return {
        "balances": [{"iban": iban} for iban in balances],
        "transactions": [{"iban": iban} for iban in transactions],
        "trustedBeneficiaries": trusted_beneficiaries,
        "psuIdentity": psu_identity,
    }


def issue_client_certificate(
    certs_dir: Path, out_dir: Path, organization_id: str, *, self_signed: bool = False
) -> tuple[str, str]:
    """A client certificate for another TPP, issued by the sandbox CA (or self-signed): ``(cert, key)`` paths."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, organization_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organization_id} QWAC"),
        ]
    )
    if self_signed:
        issuer_name, issuer_key = subject, key
    else:
        ca_cert = x509.load_pem_x509_certificate((certs_dir / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((certs_dir / "ca-key.pem").read_bytes(), password=None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        issuer_name, issuer_key = ca_cert.subject, ca_key
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = out_dir / f"{organization_id}.pem", out_dir / f"{organization_id}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def account_profile(resource_id: str) -> HistoryProfile:
    """The history profile of a sandbox account, by resource id."""
    for personas in PERSONAS.values():
        for persona in personas:
            for account in persona.accounts:
                if account.resource_id == resource_id:
                    return account.profile
    raise LookupError(resource_id)


def settlement_examples(
    day: dt.date, resource_id: str = MARC_ACCOUNTS[0], *, horizon_days: int = 120
) -> dict[Fate, Settlement]:
    """For sandbox day ``day``, the first transaction of each :class:`~sandbox.history.Fate` still pending then or
    later, from Marc's main account by default.

    A settlement's ``pending`` entry is listed (``PDNG``) on ``resolved_on - 1`` (and the day before); from
    ``resolved_on`` on, its ``booked`` entry is listed instead, or nothing when ``RELEASED``. A test travels to
    ``resolved_on - 1``, reads, moves the clock one day (``advance_seconds=86400``) and reads again; a sync test that
    reads once a day from ``day`` to the latest ``resolved_on`` sees every fate (on Marc's main account that is 10
    days at the median, 38 at most over a year of start days; on Sophie's card account 4, at most 13).
    """
    profile = account_profile(resource_id)
    found: dict[Fate, Settlement] = {}
    for offset in range(-1, horizon_days):
        for settlement in day_settlements(resource_id, profile, day + dt.timedelta(days=offset)):
            found.setdefault(settlement.fate, settlement)
        if len(found) == len(Fate):
            return found
    missing = sorted(set(Fate) - set(found))
    raise LookupError(f"no {', '.join(missing)} within {horizon_days} days of {day} on {resource_id}")
