"""Consent submission: ``PUT /v1/connections/{bank_code}/consent`` → the bank's ``PUT /consents``.

The new consent replaces the previous one at the bank, and then on the connection: its snapshot is written with a
conditional update on the version read (retried on a concurrent token refresh, refused if the connection was
revoked or reconnected meanwhile). The IBANs were checked by the request model (format, country length, mod-97);
whether they are the user's is for the bank to say: its 400 becomes our ``validation_error``.

Idempotency: with an ``Idempotency-Key`` header the submission goes through :mod:`aisp.idempotency`, keyed on the
(user, bank, header value) triple and bound to the validated consent (same key, other body: 422).
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from aisp import errors
from aisp.idempotency import Idempotent
from aisp.logic.bank_calls import BankSession, open_session
from aisp.logic.ports import MAX_WRITE_ATTEMPTS
from aisp.logic.services import AccountServices
from aisp.logic.sync.purge import purge_unconsented
from aisp.models.api import CardConsent, SubmitConsentRequest, SubmitConsentResponse
from aisp.models.connection import CardReference, Connection, ConnectionStatus, ConsentSnapshot
from aisp.models.psu import PsuInfo
from aisp.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = ["ConsentCall", "submit_consent"]


class ConsentCall(BaseModel):
    """What the idempotency record is keyed on (user, bank, key) and validated against (the consent)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    user_id: str
    bank_code: str
    idempotency_key: str
    consent: SubmitConsentRequest


@tracer.capture_method(capture_response=False)
def submit_consent(
    *,
    user_id: str,
    bank_code: str,
    request: SubmitConsentRequest,
    psu: PsuInfo | None,
    idempotency_key: str | None = None,
    lambda_context: LambdaContext | None = None,
    services: AccountServices,
) -> SubmitConsentResponse:
    """Send the user's consent to the bank and store it on the connection.

    Parameters
    ----------
    request
        The validated consent (IBANs normalised and checked).
    idempotency_key
        The client's ``Idempotency-Key``, or ``None`` (no replay protection).
    lambda_context
        Lets Powertools expire an in-progress record when the invocation times out.

    Raises
    ------
    InvalidRequestError
        The bank refused the consent (400): an IBAN is not an account of the user at this bank.
    IdempotencyKeyReusedError, RequestInProgressError
        The key was used with another body, or its first request is still running.
    ConnectionNotFoundError, ReauthRequiredError, ConflictError, UpstreamError
        As for every bank call (see :mod:`aisp.logic.accounts`).
    """
    services.connections.registry.get(bank_code)
    if idempotency_key is None:
        return _submit(user_id, bank_code, request, psu, services)
    store = services.connections.idempotency
    if store is None:
        raise errors.ConfigurationError("no idempotency store for keyed consent submissions")
    call = ConsentCall(user_id=user_id, bank_code=bank_code, idempotency_key=idempotency_key, consent=request)
    return _idempotent_submit(
        call, store=store(), lambda_context=lambda_context, details={"bank_code": bank_code}, psu=psu, services=services
    )


def _submit_once(*, call: ConsentCall, psu: PsuInfo | None, services: AccountServices) -> SubmitConsentResponse:
    """The idempotent unit: ``call`` is hashed (key and payload), ``psu`` and ``services`` are not."""
    return _submit(call.user_id, call.bank_code, call.consent, psu, services)


_idempotent_submit: Final[Idempotent[ConsentCall, SubmitConsentResponse]] = Idempotent(
    _submit_once, event_key="[user_id, bank_code, idempotency_key]", payload="consent", answer=SubmitConsentResponse
)


def _submit(
    user_id: str, bank_code: str, request: SubmitConsentRequest, psu: PsuInfo | None, services: AccountServices
) -> SubmitConsentResponse:
    consent = ConsentSnapshot(
        balances=_on_record(request.balances),
        transactions=_on_record(request.transactions),
        psu_identity=request.psu_identity,
        trusted_beneficiaries=request.trusted_beneficiaries,
    )
    session = open_session(user_id, bank_code, services, attended=psu is not None)
    logger.append_keys(connection_id=session.connection.connection_id, bank_code=bank_code)
    try:
        session.call(
            "put_consents",
            lambda token: services.bank.put_consents(bank_code, access_token=token, consent=consent, psu=psu),
            counted=False,  # a write the user makes: no AIS read the bank counts
        )
    except errors.BankClientError as exc:
        if type(exc) is errors.BankClientError and exc.status == HTTPStatus.BAD_REQUEST:
            raise errors.InvalidRequestError(
                "the bank refused the consent: an account is not one of the user's at this bank",
                details={"bank_code": bank_code, "field": "balances/transactions"},
            ) from exc
        raise
    now = services.connections.clock.now()
    snapshot = consent.model_copy(update={"updated_at": now})
    stored = _store(services, session, snapshot, now)
    try:
        purge_unconsented(services.transactions, stored.connection_id, snapshot)
    except errors.PersistenceError:
        # The consent stands; the next sync purges what the bank no longer lets us read.
        logger.warning("could not purge the synced accounts the new consent leaves out")
    metrics.add_metric(name="ConsentSubmitted", unit=MetricUnit.Count, value=1)
    logger.info(
        "consent stored",
        balances=len(snapshot.balances),
        transactions=len(snapshot.transactions),
        psu_identity=snapshot.psu_identity,
        trusted_beneficiaries=snapshot.trusted_beneficiaries,
    )
    return SubmitConsentResponse(bank_code=bank_code, connection_id=stored.connection_id, consent=snapshot)


def _on_record(items: list[str | CardConsent]) -> list[str | CardReference]:
    """A consent list as the connection keeps it: IBANs, and cards as plain ``{card}`` references."""
    return [item if isinstance(item, str) else CardReference(card=item.card) for item in items]


def _store(services: AccountServices, session: BankSession, snapshot: ConsentSnapshot, now: datetime) -> Connection:
    repository = services.connections.connections
    original = current = session.connection
    for _ in range(MAX_WRITE_ATTEMPTS):
        try:
            return repository.store_consent(current, consent=snapshot, now=now)
        except errors.ConflictError:
            found = repository.find(original.user_id, original.bank_code)
        # A token refresh only moved the version: write again. Revoked or reconnected: the consent is not ours to keep.
        if (
            found is None
            or found.status is not ConnectionStatus.ACTIVE
            or found.connection_id != original.connection_id
        ):
            break
        current = found
    raise errors.ConflictError(
        "connection changed while the consent was stored", details={"bank_code": original.bank_code}
    )
