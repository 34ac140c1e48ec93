"""OAuthCallbackFunction: ``GET /oauth/callback``, the bank's browser redirect (no JWT).

Answers a 302 to the ``return_url`` stored with the state (``status=authorized&bank_code=..&completion=..``, the
one-time value the app completes the connection with, or ``status=error&error=<code>``), or, when the state matches
nothing (no return_url to go to), a small static 400 page. Never echoes the code, the state or the bank's text;
``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` on every answer.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp import audit, wiring
from aisp.api import register_error_handlers
from aisp.logic.oauth_callback import CallbackError, handle_callback
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)

# Longer values are not ours (our states are 43 characters) or not plausible; they are treated as absent.
MAX_LENGTHS: Final = {"state": 256, "code": 2048, "error": 64}
# For docs/openapi.json only (scripts/export_openapi.py adds them to the operation): declaring them to Powertools
# would validate them, and a browser would get a JSON 422 instead of the page or redirect below.
DOCUMENTED_QUERY: Final = (
    ("state", "The state our authorization_url carried: single-use, it finds the pending connection"),
    ("code", "The authorization code the bank issued (exchanged once, never logged or echoed)"),
    ("error", "The bank's OAuth error instead of a code (e.g. access_denied when the user declines)"),
)
OPENAPI_QUERY_PARAMETERS: Final = {
    ("GET", "/oauth/callback"): [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{text}. Over {MAX_LENGTHS[name]} characters, or repeated, it counts as absent.",
            "schema": {"type": "string"},
        }
        for name, text in DOCUMENTED_QUERY
    ]
}
SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
INVALID_LINK_PAGE: Final = (
    "<!doctype html>\n"
    '<html lang="en"><head><meta charset="utf-8"><title>Invalid link</title></head>\n'
    "<body><h1>This link is invalid</h1>\n"
    "<p>This bank connection link is unknown or has already been used. "
    "Please return to the app and start again.</p>\n"
    f"<p>Error code: {CallbackError.INVALID_STATE.value}</p></body></html>\n"
)


def _query_values(raw_query: str) -> dict[str, str | None]:
    """``state``, ``code`` and ``error`` from the raw query; a repeated or over-long parameter counts as absent."""
    parsed = parse_qs(raw_query, keep_blank_values=True, max_num_fields=20)
    values: dict[str, str | None] = {}
    for name, limit in MAX_LENGTHS.items():
        found = parsed.get(name, [])
        values[name] = found[0] if len(found) == 1 and len(found[0]) <= limit else None
    return values


@app.get(
    "/oauth/callback",
    summary="The bank's browser redirect (no JWT)",
    description="Not for API clients: the bank sends the user's browser here at the end of its login.",
    operation_id="oauthCallback",
    tags=["connections"],
    responses={
        302: {
            "description": "Back to the app's return_url with status=authorized&bank_code=<code>&completion=<value> "
            "(complete it with POST /v1/connections/{bank_code}/complete within 5 minutes, as the same user) or "
            "status=error&error=<code>",
            "headers": {"Location": {"description": "The app's return_url", "schema": {"type": "string"}}},
            "content": {},
        },
        400: {
            "description": "invalid_state: the link matches no pending connection (a static page)",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
    },
)
def handle_oauth_callback() -> Response[str]:
    """Complete the connection: 302 back to the app, or 400 for a link that matches nothing."""
    raw_query = app.current_event.raw_query_string or ""
    try:
        values = _query_values(raw_query)
    except ValueError:  # more fields than any bank sends
        values = dict.fromkeys(MAX_LENGTHS)
    result = handle_callback(
        state=values["state"], code=values["code"], error=values["error"], services=wiring.connection_services()
    )
    if result.redirect_url is None:
        return Response(
            status_code=400,
            content_type="text/html; charset=utf-8",
            body=INVALID_LINK_PAGE,
            headers={
                **SECURITY_HEADERS,
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                "X-Error-Code": CallbackError.INVALID_STATE.value,
            },
        )
    return Response(status_code=302, body="", headers={**SECURITY_HEADERS, "Location": result.redirect_url})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@audit.invocation
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
