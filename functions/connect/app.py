"""ConnectFunction: ``GET /v1/banks`` and the ``/v1/connections`` resource.

The user is the JWT ``sub`` set by the HTTP API JWT authorizer; no route takes a user id from the path or body.
The two reads (the list and one connection) also take the fintech's server token acting for the user in
``Aisp-User`` (``aisp.api.auth``); starting, completing and deleting a connection are the user's own.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

# The connection use cases are imported by the handlers that call them: init loads what routing and the OpenAPI
# description need, a route's first call the rest (cold init: bench/README.md).
from aisp import audit, wiring
from aisp.api import current_caller, current_user, register_error_handlers
from aisp.api.headers import no_store, nosniff
from aisp.api.openapi import responses
from aisp.api.params import BankCodePath, IdempotencyKeyHeader
from aisp.logic.banks import list_banks
from aisp.models.api import (
    CompleteConnectionRequest,
    ConnectionSummary,
    CreateConnectionRequest,
    CreateConnectionResponse,
    ListBanksResponse,
    ListConnectionsResponse,
)
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)
app.use([nosniff])


@app.get(
    "/v1/banks",
    summary="BPCE establishments",
    operation_id="listBanks",
    tags=["banks"],
    responses=responses(()),
)
def handle_list_banks() -> ListBanksResponse:
    """List the BPCE establishments and what each supports."""
    return ListBanksResponse(banks=list_banks(wiring.registry()))


@app.post(
    "/v1/connections",
    summary="Start connecting a bank",
    description="Answers the bank's login link for the user's browser. With an Idempotency-Key, a retry (same key, "
    "same body) gets the same answer.",
    operation_id="createConnection",
    tags=["connections"],
    responses=responses((400, 403, 404, 409, 422, 503), status=201, description="The bank's login link"),
    middlewares=[no_store],
)
def handle_create_connection(
    request: CreateConnectionRequest, idempotency_key: IdempotencyKeyHeader = None
) -> Response[CreateConnectionResponse]:
    """Start the OAuth journey: 201 with the bank's login link."""
    from aisp.logic.connections import start_connection_once  # noqa: PLC0415

    started = start_connection_once(
        user_id=current_user(app.current_event),
        request=request,
        api_domain=app.current_event.request_context.domain_name,
        idempotency_key=idempotency_key,
        lambda_context=app.lambda_context,
        services=wiring.connection_services(),
        policy=wiring.connect_policy(),
    )
    return Response(status_code=201, content_type="application/json", body=started)


@app.get(
    "/v1/connections",
    summary="The user's connections",
    operation_id="listConnections",
    tags=["connections"],
    responses=responses((400, 403, 503)),
    middlewares=[no_store],
)
def handle_list_connections() -> ListConnectionsResponse:
    """List the user's connections (no tokens, ever)."""
    from aisp.logic.connections import list_connections  # noqa: PLC0415

    connections = list_connections(current_caller(app.current_event).user_id, services=wiring.connection_services())
    return ListConnectionsResponse(connections=connections)


@app.get(
    "/v1/connections/<bank_code>",
    summary="One connection",
    operation_id="getConnection",
    tags=["connections"],
    responses=responses((400, 401, 403, 404, 503)),
    middlewares=[no_store],
)
def handle_get_connection(bank_code: BankCodePath) -> ConnectionSummary:
    """The user's connection to this bank, as it stands now (no tokens, ever)."""
    from aisp.logic.connections import get_connection  # noqa: PLC0415

    return get_connection(current_caller(app.current_event).user_id, bank_code, services=wiring.connection_services())


@app.post(
    "/v1/connections/<bank_code>/complete",
    summary="Complete a connection the bank authorized",
    operation_id="completeConnection",
    tags=["connections"],
    responses=responses(
        (400, 401, 403, 404, 409, 503),
        description="ACTIVE: the connection serves data. 400 invalid_completion for a value that is unknown, used, "
        "expired, for another bank or another user's (one answer for all)",
    ),
    middlewares=[no_store],
)
def handle_complete_connection(bank_code: BankCodePath, request: CompleteConnectionRequest) -> ConnectionSummary:
    """Activate the connection with the callback's one-time ``completion`` value, as the user who started it."""
    from aisp.logic.connections import complete_connection  # noqa: PLC0415

    return complete_connection(
        user_id=current_user(app.current_event),
        bank_code=bank_code,
        completion=request.completion,
        services=wiring.connection_services(),
    )


@app.delete(
    "/v1/connections/<bank_code>",
    summary="Delete a connection",
    operation_id="deleteConnection",
    tags=["connections"],
    responses=responses((400, 401, 403, 404, 409, 503), status=204, description="Deleted", content={}),
    middlewares=[no_store],
)
def handle_delete_connection(bank_code: BankCodePath) -> Response[None]:
    """Forget a connection's tokens (revoked at the bank where it can): 204."""
    from aisp.logic.connections import delete_connection  # noqa: PLC0415

    delete_connection(current_user(app.current_event), bank_code, services=wiring.connection_services())
    return Response(status_code=204)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@audit.invocation
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
