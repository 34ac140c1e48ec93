"""The login screens a PSU's browser sees, served over plain HTTP on loopback (no client certificate, no warning).

``GET /{bank_code}/stet/psd2/oauth/authorize?response_type=code&client_id=..&redirect_uri=..&scope=aisp&state=..``
(plus PKCE's optional ``code_challenge`` and ``code_challenge_method``, RFC 7636) starts a flow; the pages then post
back to the same path, in the 89C3 guide's order:

1. identification, form field ``identifier`` (remote banking identifier, e.g. ``D0999990I0``);
2. strong authentication, form field ``otp`` (the SMS code, ``12345678`` unless the persona is made to fail);
3. the decision, ``decision=accept|refuse``: 302 to the redirect URI with ``code`` and ``state``, or with
   ``error=access_denied``.

An unknown client or an unregistered redirect URI gets an error page, never a redirect. A wrong identifier or
OTP re-displays the screen with a message; the third failure locks the flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit, urlunsplit

from sandbox.core import SandboxCore
from sandbox.oauth import PKCE_METHODS, PKCE_VALUE, issue_code
from sandbox.store import BankStore, Flow, Step, new_token
from sandbox.web import Request, Response, html_response, redirect

AUTHORIZE_SUFFIX = ("stet", "psd2", "oauth", "authorize")
FLOW_ID_BYTES = 18

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f3f1f6;margin:0;color:#222}
header{background:#5a1f6e;color:#fff;padding:1rem 2rem}header small{opacity:.8}
main{max-width:32rem;margin:2rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 2px 8px #0002}
label{display:block;margin:.5rem 0}input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem}
button{padding:.6rem 1.2rem;font-size:1rem;margin:1rem .5rem 0 0;border:0;border-radius:4px;
background:#5a1f6e;color:#fff}
button.secondary{background:#888}.error{color:#b00020;font-weight:600}.hint{font-size:.85rem;color:#555}
table{border-collapse:collapse;font-size:.8rem}td,th{border:1px solid #ddd;padding:.2rem .4rem;text-align:left}
"""


def _page(title: str, bank_name: str, content: str) -> str:
    return (
        "<!doctype html><html lang='fr'><head><meta charset='utf-8'>"
        f"<title>{escape(title)} - {escape(bank_name)}</title><style>{_STYLE}</style></head>"
        f"<body><header><strong>{escape(bank_name)}</strong><br><small>89C3 offline sandbox</small></header>"
        f"<main><h1>{escape(title)}</h1>{content}</main></body></html>"
    )


def with_query(uri: str, params: dict[str, str]) -> str:
    """Append ``params`` to ``uri``'s query string, keeping what is already there."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class ScreensApp:
    """The browser-facing application (HTTP listener)."""

    def __init__(self, core: SandboxCore) -> None:
        self._core = core

    def handle(self, request: Request) -> Response:
        """Route ``/`` (index) and ``/{bank_code}/stet/psd2/oauth/authorize``."""
        segments = tuple(segment for segment in request.path.split("/") if segment)
        if not segments:
            return html_response(HTTPStatus.OK, self._index())
        store = self._core.stores.get(segments[0])
        if store is None or segments[1:] != AUTHORIZE_SUFFIX:
            return self._error(None, HTTPStatus.NOT_FOUND, "Page introuvable.")
        if request.method == "GET":
            return self._start(store, request)
        if request.method == "POST":
            return self._step(store, request)
        return self._error(store, HTTPStatus.METHOD_NOT_ALLOWED, "Méthode non autorisée.")

    # --- pages -------------------------------------------------------------------------------------------------

    def _index(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(store.bank.code)}</td><td>{escape(store.bank.display_name)}</td>"
            f"<td>{len(store.personas)}</td></tr>"
            for store in self._core.stores.values()
        )
        return _page(
            "Sandbox 89C3",
            "Groupe BPCE",
            "<p>Banks served by this sandbox (authorize at <code>/{bank_code}/stet/psd2/oauth/authorize</code>):</p>"
            f"<table><tr><th>Code</th><th>Banks</th><th>Personas</th></tr>{rows}</table>",
        )

    def _error(self, store: BankStore | None, status: int, message: str) -> Response:
        bank_name = store.bank.display_name if store is not None else "Groupe BPCE"
        return html_response(status, _page("Erreur", bank_name, f"<p class='error' id='error'>{escape(message)}</p>"))

    def _personas_hint(self, store: BankStore) -> str:
        rows = "".join(
            f"<tr><td><code>{escape(p.identifier)}</code></td><td>{escape(p.otp or '(always refused)')}</td>"
            f"<td>{escape(p.purpose)}</td></tr>"
            for p in store.personas.values()
        )
        return (
            "<details class='hint'><summary>Sandbox personas</summary>"
            f"<table><tr><th>Identifier</th><th>OTP</th><th>Persona</th></tr>{rows}</table></details>"
        )

    def _render(self, store: BankStore, flow: Flow, message: str | None = None) -> Response:
        error = f"<p class='error' id='error'>{escape(message)}</p>" if message else ""
        hidden = f"<input type='hidden' name='flow' value='{escape(flow.flow_id)}'>"
        action = f"/{escape(store.bank.code)}/stet/psd2/oauth/authorize"
        if flow.step is Step.IDENTIFICATION:
            title = "Identification"
            form = (
                "<label for='identifier'>Identifiant de banque à distance</label>"
                "<input type='text' id='identifier' name='identifier' autocomplete='username' autofocus>"
                "<button type='submit'>Valider</button>"
            )
            form += self._personas_hint(store)
        elif flow.step is Step.AUTHENTICATION:
            title = "Authentification forte"
            form = (
                "<p>Saisissez le code de sécurité reçu par SMS.</p>"
                "<label for='otp'>Code reçu par SMS</label>"
                "<input type='password' id='otp' name='otp' inputmode='numeric' autocomplete='one-time-code' autofocus>"
                "<button type='submit'>Valider</button>"
                "<p class='hint'>Sandbox: the code is 12345678.</p>"
            )
        else:
            title = "Autorisation d'accès à vos comptes"
            form = (
                f"<p>L'application <strong>{escape(flow.client_id)}</strong> demande à accéder, pendant 90 jours, "
                "à la liste de vos comptes, à leurs soldes et à leur historique.</p>"
                "<button type='submit' name='decision' value='accept'>Accepter</button>"
                "<button type='submit' class='secondary' name='decision' value='refuse'>Refuser</button>"
            )
        content = f"{error}<form method='post' action='{action}'>{hidden}{form}</form>"
        return html_response(HTTPStatus.OK, _page(title, store.bank.display_name, content))

    def _locked(self, store: BankStore, flow: Flow) -> Response:
        back = with_query(
            flow.redirect_uri,
            {
                "error": "access_denied",
                "error_description": "authentication failed",
                **({"state": flow.state} if flow.state is not None else {}),
            },
        )
        content = (
            "<p class='error' id='error'>Trop d'essais infructueux : votre accès est bloqué.</p>"
            f"<p><a id='back' href='{escape(back)}'>Retour à l'application</a></p>"
        )
        return html_response(HTTPStatus.FORBIDDEN, _page("Accès bloqué", store.bank.display_name, content))

    # --- flow --------------------------------------------------------------------------------------------------

    def _start(self, store: BankStore, request: Request) -> Response:
        query = request.query
        client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
        tpp = self._core.tpp
        if client_id != tpp.client_id:
            return self._error(store, HTTPStatus.BAD_REQUEST, "Application inconnue (client_id).")
        if redirect_uri not in tpp.redirect_uris:
            return self._error(store, HTTPStatus.BAD_REQUEST, "Adresse de retour (redirect_uri) non enregistrée.")
        state = query.get("state")
        error = _authorize_error(query)
        if error is not None:
            return redirect(with_query(redirect_uri, _error_params(error, state)))
        challenge = query.get("code_challenge")
        flow = Flow(
            flow_id=new_token(FLOW_ID_BYTES),
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            expires_at=self._core.clock.now() + self._core.settings.flow_seconds,
            code_challenge=challenge,
            # RFC 7636 §4.3: plain when a challenge comes without a method
            code_challenge_method=None if challenge is None else query.get("code_challenge_method", "plain"),
        )
        with store.lock:
            self._forget_expired(store)
            store.flows[flow.flow_id] = flow
        return self._render(store, flow)

    def _forget_expired(self, store: BankStore) -> None:
        now = self._core.clock.now()
        for flow_id in [flow_id for flow_id, flow in store.flows.items() if flow.expires_at <= now]:
            del store.flows[flow_id]

    def _step(self, store: BankStore, request: Request) -> Response:
        form = request.form()
        with store.lock:
            flow = store.flows.get(form.get("flow", ""))
        if flow is None or flow.expires_at <= self._core.clock.now():
            return self._error(
                store, HTTPStatus.BAD_REQUEST, "Session inconnue ou expirée, recommencez depuis l'application."
            )
        if flow.step is Step.LOCKED:
            return self._locked(store, flow)
        if flow.step is Step.DONE:
            return self._error(store, HTTPStatus.BAD_REQUEST, "Cette demande a déjà été traitée.")
        if flow.step is Step.IDENTIFICATION:
            return self._identify(store, flow, form.get("identifier", ""))
        if flow.step is Step.AUTHENTICATION:
            return self._authenticate(store, flow, form.get("otp", ""))
        return self._decide(store, flow, form.get("decision", ""))

    def _fail(self, store: BankStore, flow: Flow, message: str) -> Response:
        flow.failures += 1
        remaining = self._core.settings.max_login_failures - flow.failures
        if remaining <= 0:
            flow.step = Step.LOCKED
            return self._locked(store, flow)
        return self._render(store, flow, f"{message} Il vous reste {remaining} essai(s).")

    def _identify(self, store: BankStore, flow: Flow, identifier: str) -> Response:
        persona = store.personas.get(identifier.strip().upper())
        if persona is None:
            return self._fail(store, flow, "Identifiant inconnu.")
        flow.psu_id = persona.identifier
        flow.step = Step.AUTHENTICATION
        return self._render(store, flow)

    def _authenticate(self, store: BankStore, flow: Flow, otp: str) -> Response:
        persona = store.personas[flow.psu_id or ""]
        if persona.otp is None or otp.strip() != persona.otp:
            return self._fail(store, flow, "Code de sécurité incorrect.")
        flow.step = Step.DECISION
        return self._render(store, flow)

    def _decide(self, store: BankStore, flow: Flow, decision: str) -> Response:
        if decision == "accept":
            flow.step = Step.DONE
            code = issue_code(
                self._core,
                store,
                client_id=flow.client_id,
                redirect_uri=flow.redirect_uri,
                psu_id=flow.psu_id or "",
                code_challenge=flow.code_challenge,
                code_challenge_method=flow.code_challenge_method,
            )
            params = {"code": code, **({"state": flow.state} if flow.state is not None else {})}
            return redirect(with_query(flow.redirect_uri, params))
        if decision == "refuse":
            flow.step = Step.DONE
            return redirect(with_query(flow.redirect_uri, _error_params("access_denied", flow.state)))
        return self._render(store, flow, "Choisissez Accepter ou Refuser.")


def _authorize_error(query: Mapping[str, str]) -> str | None:
    """The OAuth error a redirect reports for an authorize request the screens cannot start, or ``None``."""
    if query.get("response_type") != "code":
        return "unsupported_response_type"
    if "aisp" not in query.get("scope", "").lower().split():
        return "invalid_scope"
    challenge, method = query.get("code_challenge"), query.get("code_challenge_method")
    if challenge is None:
        return None if method is None else "invalid_request"
    if (method or "plain") not in PKCE_METHODS or not PKCE_VALUE.fullmatch(challenge):
        return "invalid_request"
    return None


def _error_params(error: str, state: str | None) -> dict[str, str]:
    return {"error": error, **({"state": state} if state is not None else {})}
