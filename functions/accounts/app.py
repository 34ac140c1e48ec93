"""AccountsFunction: on-demand account queries under ``/v1`` (accounts, balances, transactions, beneficiaries,
identity, and the accounts of every bank at once).

The user is the JWT ``sub``; these calls come from the user's app, so the bank gets the PSU context
(``PSU-IP-Address`` = the caller's source IP, the other ``PSU-*`` from the app's own headers).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp import audit, wiring
from aisp.api import current_user, psu_from_event, register_error_handlers
from aisp.api.errors import classify
from aisp.api.headers import no_store
from aisp.api.openapi import ACCOUNT_ERRORS, BANK_ERRORS, responses
from aisp.api.params import BankCodePath, NotNullable
from aisp.cursors import MAX_CURSOR_LENGTH
from aisp.errors import AispError
from aisp.logic.accounts import (
    TransactionQuery,
    get_balances,
    get_identity,
    get_transactions,
    get_trusted_beneficiaries,
    list_accounts,
    list_all_accounts,
)
from aisp.models.accounts import (
    AllAccountsResponse,
    BalancesResponse,
    BankErrorItem,
    IdentityResponse,
    ListAccountsResponse,
    TransactionsResponse,
    TrustedBeneficiariesResponse,
)
from aisp.models.psu import PsuInfo
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)
app.use([no_store])

MAX_LIMIT = 500

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
AllQuery = Annotated[
    bool,
    Query(alias="all", description="Follow every page within the time budget; next_cursor says where it stopped"),
]


def _psu() -> PsuInfo | None:
    return psu_from_event(app.current_event)


@app.get(
    "/v1/accounts",
    summary="Accounts at every connected bank",
    description="Every active connection's accounts, banks queried concurrently; a failing bank is an errors entry.",
    operation_id="listAllAccounts",
    tags=["accounts"],
    responses=responses((503,)),
)
def handle_list_all_accounts() -> AllAccountsResponse:
    """Accounts across every active connection, with per-bank error entries."""
    result = list_all_accounts(current_user(app.current_event), psu=_psu(), services=wiring.account_services())
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
    return list_accounts(current_user(app.current_event), bank_code, psu=_psu(), services=wiring.account_services())


@app.get(
    "/v1/connections/<bank_code>/accounts/<account_id>/balances",
    summary="Balances of one account",
    operation_id="getBalances",
    tags=["accounts"],
    responses=responses(ACCOUNT_ERRORS),
)
def handle_get_balances(bank_code: BankCodePath, account_id: AccountIdPath) -> BalancesResponse:
    """The account's balances (403 if the consent does not cover them)."""
    balances = get_balances(
        current_user(app.current_event), bank_code, account_id, psu=_psu(), services=wiring.account_services()
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
    query = TransactionQuery(date_from=date_from, date_to=date_to, cursor=cursor, limit=limit, all_pages=all_pages)
    return get_transactions(
        current_user(app.current_event),
        bank_code,
        account_id,
        query,
        psu=_psu(),
        remaining_ms=app.lambda_context.get_remaining_time_in_millis,
        services=wiring.account_services(),
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
    beneficiaries = get_trusted_beneficiaries(
        current_user(app.current_event), bank_code, psu=_psu(), services=wiring.account_services()
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
    return get_identity(current_user(app.current_event), bank_code, psu=_psu(), services=wiring.account_services())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@audit.invocation
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
