"""AccountsFunction: on-demand account queries under ``/v1`` (accounts, balances, transactions, beneficiaries,
identity, the accounts of every bank at once) and today's unattended quota.

Two kinds of caller (``aisp.api.auth``): the user's app (the JWT ``sub``; the bank gets the PSU context), or the
fintech's backend acting for the user in ``Aisp-User`` (no ``PSU-*``; each read reserves a unit of the bank's daily
quota, and the answer carries the IETF ``RateLimit`` fields). Design: ``docs/accounts.md``.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

# The use cases that reach the bank or the stored feed are imported by the handlers that call them: init loads what
# routing and the OpenAPI description need, a route's first call the rest (cold init: bench/README.md).
from aisp import audit, wiring
from aisp.api import Caller, current_caller, register_error_handlers
from aisp.api.errors import classify
from aisp.api.headers import no_store, rate_limit_headers
from aisp.api.openapi import ACCOUNT_ERRORS, BANK_ERRORS, responses
from aisp.api.params import BankCodePath, NotNullable
from aisp.cursors import MAX_CURSOR_LENGTH
from aisp.errors import AispError
from aisp.logic.quota import QuotaMeter, quota_today
from aisp.models.accounts import (
    AllAccountsResponse,
    BalancesResponse,
    BankErrorItem,
    IdentityResponse,
    ListAccountsResponse,
    TransactionsResponse,
    TransactionsSyncResponse,
    TrustedBeneficiariesResponse,
)
from aisp.models.quota import QuotaResponse, quota_day_seconds
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)


def quota_fields(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """An unattended answer says what its reads left: ``RateLimit`` and ``RateLimit-Policy`` (the fewest units left
    among the counters the request used)."""
    response = next_middleware(app)
    meter = app.context.get("quota_meter")
    if isinstance(meter, QuotaMeter) and meter.lowest is not None and meter.day is not None:
        usage, window = meter.lowest, quota_day_seconds(meter.day)
        response.headers.update(
            rate_limit_headers(remaining=usage.remaining, reset=meter.reset_seconds, limit=usage.limit, window=window)
        )
    return response


app.use([no_store, quota_fields])

MAX_LIMIT = 500
MAX_SYNC_COUNT = 500

AccountIdPath = Annotated[
    str,
    Path(
        # At least one character that is not a dot: "." and ".." are path segments, never an account.
        pattern=r"^[A-Za-z0-9_\-:().,']*[A-Za-z0-9_\-:(),'][A-Za-z0-9_\-:().,']*$",
        max_length=100,
        description="The account_id of GET .../accounts (the bank's resourceId)",
        examples=["038-CPT30019654051"],
    ),
]
DateFromQuery = Annotated[date | None, NotNullable, Query(description="First booking day (inclusive), YYYY-MM-DD")]
DateToQuery = Annotated[date | None, NotNullable, Query(description="Last booking day (inclusive), YYYY-MM-DD")]
CursorQuery = Annotated[
    str | None,
    NotNullable,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="The next_cursor of the previous answer (opaque; not combinable with dates)",
    ),
]
LimitQuery = Annotated[
    int | None,
    NotNullable,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description="At most this many transactions, filled from the bank's pages (100 each at BPCE); "
        "without it, one bank page",
    ),
]
SyncCursorQuery = Annotated[
    str | None,
    NotNullable,
    Query(
        max_length=MAX_CURSOR_LENGTH, description="The next_cursor of the previous sync (opaque; none: from the start)"
    ),
]
LiveQuery = Annotated[
    bool,
    Query(
        description="With a server token: read the bank now (a unit of the day's quota) instead of the balances the "
        "background sync kept (synced_at says when). The user's own app always reads the bank"
    ),
]
AllQuery = Annotated[
    bool,
    Query(alias="all", description="Follow every page within the time budget; next_cursor says where it stopped"),
]


def _caller() -> tuple[Caller, QuotaMeter | None]:
    """The caller, and for an unattended one the meter its reads report to (read by :func:`quota_fields`)."""
    caller = current_caller(app.current_event)
    meter = None if caller.attended else QuotaMeter()
    app.append_context(quota_meter=meter)  # type: ignore[no-untyped-call]
    return caller, meter


@app.get(
    "/v1/accounts",
    summary="Accounts at every connected bank",
    description="Every active connection's accounts, banks queried concurrently; a failing bank is an errors entry.",
    operation_id="listAllAccounts",
    tags=["accounts"],
    responses=responses((400, 403, 503)),
)
def handle_list_all_accounts() -> AllAccountsResponse:
    """Accounts across every active connection, with per-bank error entries."""
    from aisp.logic.accounts import list_all_accounts  # noqa: PLC0415

    caller, meter = _caller()
    result = list_all_accounts(caller.user_id, psu=caller.psu, services=wiring.account_services(), meter=meter)
    failures = []
    for bank_code, error in result.failures:
        status, code, title = (
            classify(error) if isinstance(error, AispError) else (500, "internal_error", "Internal error")
        )
        failures.append(BankErrorItem(bank_code=bank_code, status=status, code=code, title=title))
    return AllAccountsResponse(accounts=result.accounts, errors=failures)


@app.get(
    "/v1/connections/<bank_code>/accounts",
    summary="Accounts at one bank",
    operation_id="listAccounts",
    tags=["accounts"],
    responses=responses(BANK_ERRORS),
)
def handle_list_accounts(bank_code: BankCodePath) -> ListAccountsResponse:
    """The user's accounts at this bank (without balances or links until consented)."""
    from aisp.logic.accounts import list_accounts  # noqa: PLC0415

    caller, meter = _caller()
    return list_accounts(caller.user_id, bank_code, psu=caller.psu, services=wiring.account_services(), meter=meter)


@app.get(
    "/v1/connections/<bank_code>/accounts/<account_id>/balances",
    summary="Balances of one account",
    operation_id="getBalances",
    tags=["accounts"],
    responses=responses(ACCOUNT_ERRORS),
)
def handle_get_balances(
    bank_code: BankCodePath, account_id: AccountIdPath, live: LiveQuery = False
) -> BalancesResponse:
    """The account's balances (403 if the consent does not cover them)."""
    from aisp.logic.accounts import get_balances  # noqa: PLC0415
    from aisp.logic.sync.feed import stored_balances  # noqa: PLC0415

    caller, meter = _caller()
    if not caller.attended and not live:
        kept = stored_balances(caller.user_id, bank_code, account_id, services=wiring.account_services())
        if kept is not None:
            return kept
    balances = get_balances(
        caller.user_id, bank_code, account_id, psu=caller.psu, services=wiring.account_services(), meter=meter
    )
    return BalancesResponse(balances=balances)


@app.get(
    "/v1/connections/<bank_code>/accounts/<account_id>/transactions",
    summary="Transactions of one account",
    description="Newest first, in the bank's pages. While has_more is true, continue with ?cursor=<next_cursor>; "
    "after the last page has_more is false and next_cursor is null.",
    operation_id="listTransactions",
    tags=["accounts"],
    responses=responses(ACCOUNT_ERRORS),
)
def handle_get_transactions(  # the resolver passes every parameter by name
    *,
    bank_code: BankCodePath,
    account_id: AccountIdPath,
    date_from: DateFromQuery = None,
    date_to: DateToQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
    all_pages: AllQuery = False,
) -> TransactionsResponse:
    """A page (or more) of transactions and the cursor to the next."""
    from aisp.logic.accounts import TransactionQuery, get_transactions  # noqa: PLC0415

    query = TransactionQuery(date_from=date_from, date_to=date_to, cursor=cursor, limit=limit, all_pages=all_pages)
    caller, meter = _caller()
    return get_transactions(
        caller.user_id,
        bank_code,
        account_id,
        query,
        psu=caller.psu,
        remaining_ms=app.lambda_context.get_remaining_time_in_millis,
        services=wiring.account_services(),
        meter=meter,
        owner=app.lambda_context.aws_request_id,
    )


@app.get(
    "/v1/connections/<bank_code>/trusted-beneficiaries",
    summary="Trusted beneficiaries",
    operation_id="listTrustedBeneficiaries",
    tags=["accounts"],
    responses=responses(ACCOUNT_ERRORS),
)
def handle_get_trusted_beneficiaries(bank_code: BankCodePath) -> TrustedBeneficiariesResponse:
    """The user's trusted beneficiaries (501 where the bank has none)."""
    from aisp.logic.accounts import get_trusted_beneficiaries  # noqa: PLC0415

    caller, meter = _caller()
    beneficiaries = get_trusted_beneficiaries(
        caller.user_id, bank_code, psu=caller.psu, services=wiring.account_services(), meter=meter
    )
    return TrustedBeneficiariesResponse(beneficiaries=beneficiaries)


@app.get(
    "/v1/connections/<bank_code>/identity",
    summary="The user's identity at the bank",
    operation_id="getIdentity",
    tags=["accounts"],
    responses=responses(ACCOUNT_ERRORS),
)
def handle_get_identity(bank_code: BankCodePath) -> IdentityResponse:
    """The connected PSU's name (501 where the bank does not give it)."""
    from aisp.logic.accounts import get_identity  # noqa: PLC0415

    caller, meter = _caller()
    return get_identity(caller.user_id, bank_code, psu=caller.psu, services=wiring.account_services(), meter=meter)


SyncCountQuery = Annotated[
    int,
    Query(ge=1, le=MAX_SYNC_COUNT, description="At most this many changes (added, modified and removed together)"),
]


@app.get(
    "/v1/connections/<bank_code>/transactions/sync",
    summary="What changed in the stored transactions",
    description="The changes the background sync stored after ?cursor= (from the start without it), across the "
    "connection's consented accounts, in the order they happened: added, modified (same transaction_id), removed. "
    "A booked transaction that settles a pending one is added with pending_transaction_id, the pending one removed. "
    "While has_more is true, call again at once with next_cursor; then keep next_cursor for the next sync. No bank "
    "call, no quota spent.",
    operation_id="syncTransactions",
    tags=["sync"],
    # The body is made from the stored JSON, not validated again (docs/sync.md, The route): its schema is declared.
    responses=responses((400, 403, 404, 503), content={"application/json": {"model": TransactionsSyncResponse}}),
)
def handle_sync_transactions(
    bank_code: BankCodePath, cursor: SyncCursorQuery = None, count: SyncCountQuery = 100
) -> Response[str]:
    """A page of the connection's change feed and the cursor after it."""
    from aisp.logic.sync.feed import read_changes  # noqa: PLC0415

    caller, _ = _caller()
    page = read_changes(caller.user_id, bank_code, cursor=cursor, count=count, services=wiring.account_services())
    return Response(status_code=200, content_type="application/json", body=page.json())


@app.get(
    "/v1/connections/<bank_code>/quota",
    summary="Today's unattended quota at one bank",
    description="The reads the fintech's backend may still make today without the user, per account and method "
    "(the counters used so far; any other has all of limit left), and when they reset (the next Europe/Paris "
    "midnight). Reading it spends nothing.",
    operation_id="getQuota",
    tags=["quota"],
    responses=responses((400, 403, 404, 503)),
)
def handle_get_quota(bank_code: BankCodePath) -> QuotaResponse:
    """Today's counters of the user at this bank."""
    caller, _ = _caller()
    return quota_today(caller.user_id, bank_code, services=wiring.account_services())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@audit.invocation
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
