"""Fakes of the logic's ports (STYLE §8: fakes over mocks) and a counting wrapper for the real bank gateway."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aisp.models.bank import IssuedTokens
from aisp.stet import mapping
from aisp.stet.schemas import TokenResponse

START = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@dataclass
class Call:
    operation: str
    bank_code: str
    kwargs: dict[str, Any]


@dataclass
class FakeBankGateway:
    """Records every call; each exchange issues a new token pair unless ``exchange_error`` is set."""

    expires_in: int | None = 3600
    refresh_token: bool = True
    exchange_error: Exception | None = None
    refresh_error: Exception | None = None
    revoke_error: Exception | None = None
    on_exchange: Any = None  # called inside exchange_code (to simulate a concurrent writer)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0

    def _record(self, operation: str, bank_code: str, **kwargs: Any) -> int:
        with self.lock:
            self.calls.append(Call(operation, bank_code, kwargs))
            self.issued += 1
            return self.issued

    def of(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.operation == operation]

    def authorization_url(
        self, bank_code: str, *, redirect_uri: str, state: str, code_challenge: str | None = None
    ) -> str:
        self._record(
            "authorization_url", bank_code, redirect_uri=redirect_uri, state=state, code_challenge=code_challenge
        )
        query = urlencode({"response_type": "code", "redirect_uri": redirect_uri, "state": state})
        return f"https://www.{bank_code}.sandbox.api.89c3.com/stet/psd2/oauth/authorize?{query}"

    def exchange_code(
        self, bank_code: str, *, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> IssuedTokens:
        number = self._record(
            "exchange_code", bank_code, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        if self.on_exchange is not None:
            self.on_exchange()
        if self.exchange_error is not None:
            raise self.exchange_error
        return self._tokens(number, with_refresh=self.refresh_token)

    def refresh(self, bank_code: str, *, refresh_token: str) -> IssuedTokens:
        number = self._record("refresh", bank_code, refresh_token=refresh_token)
        if self.refresh_error is not None:
            raise self.refresh_error
        return self._tokens(number, with_refresh=False)

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        self._record("revoke", bank_code, token=token, token_type_hint=token_type_hint)
        if self.revoke_error is not None:
            raise self.revoke_error

    def _tokens(self, number: int, *, with_refresh: bool) -> IssuedTokens:
        payload: dict[str, Any] = {"access_token": f"access-token-{number:04d}-secret", "token_type": "Bearer"}
        if self.expires_in is not None:
            payload["expires_in"] = self.expires_in
        if with_refresh:
            payload["refresh_token"] = f"refresh-token-{number:04d}-secret"
        return mapping.issued_tokens(TokenResponse.model_validate(payload))


class CountingBankGateway:
    """Wraps a real gateway and counts calls per operation (thread-safe)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1

    def authorization_url(
        self, bank_code: str, *, redirect_uri: str, state: str, code_challenge: str | None = None
    ) -> str:
        self._count("authorization_url")
        return self.inner.authorization_url(
            bank_code, redirect_uri=redirect_uri, state=state, code_challenge=code_challenge
        )

    def exchange_code(
        self, bank_code: str, *, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> IssuedTokens:
        self._count("exchange_code")
        return self.inner.exchange_code(bank_code, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier)

    def refresh(self, bank_code: str, *, refresh_token: str) -> IssuedTokens:
        self._count("refresh")
        return self.inner.refresh(bank_code, refresh_token=refresh_token)

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        self._count("revoke")
        self.inner.revoke(bank_code, token=token, token_type_hint=token_type_hint)


def serialize_dynamodb_writes() -> Any:
    """Make moto's DynamoDB conditional writes atomic across threads, as DynamoDB's are per item.

    moto evaluates a condition and applies the write in Python without a lock, so two threads can both pass the
    same condition; real DynamoDB never lets that happen. A transaction holds the (re-entrant) lock throughout.
    Returns a context manager (``unittest.mock.patch``).
    """
    from contextlib import ExitStack
    from unittest import mock

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    stack = ExitStack()
    for name in ("put_item", "update_item", "delete_item", "get_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, _original=original, **kwargs):
            with lock:
                return _original(self, *args, **kwargs)

        stack.enter_context(mock.patch.object(DynamoDBBackend, name, locked))
    return stack


class LocalKms:
    """The two KMS calls of :class:`aisp.aws.kms.EnvelopeCipher`, in memory: one fixed random AES-256 data key, its
    "wrapped" form a random id; any other wrapped key is refused as KMS refuses a foreign one."""

    def __init__(self) -> None:
        import os

        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._key = AESGCM.generate_key(bit_length=256)
        self._wrapped = b"local-data-key:" + os.urandom(16)

    def generate_data_key(self, **_kwargs: Any) -> dict[str, bytes]:
        return {"Plaintext": self._key, "CiphertextBlob": self._wrapped}

    def decrypt(self, *, CiphertextBlob: bytes, **_kwargs: Any) -> dict[str, bytes]:
        from botocore.exceptions import ClientError

        if CiphertextBlob != self._wrapped:
            raise ClientError({"Error": {"Code": "InvalidCiphertextException", "Message": "not ours"}}, "Decrypt")
        return {"Plaintext": self._key}


def local_token_cipher() -> Any:
    """A fast :class:`~aisp.aws.kms.TokenCipher` for tests: the real envelope cipher (AES-256-GCM, the blob format
    and its binding to the record) over :class:`LocalKms`, so no KMS, no moto. A new key on each call."""
    from aisp.aws.kms import EnvelopeCipher

    return EnvelopeCipher(key_id="local-test-key", kms_client=LocalKms())  # type: ignore[arg-type]


class RecordingPublisher:
    """The refresher's event bus: records every lifecycle event; ``fail`` makes the next publishes raise."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.fail = False
        self._lock = threading.Lock()

    def publish(self, event: Any) -> None:
        from aisp.errors import EventPublishError

        if self.fail:
            raise EventPublishError("event bus refused the event")
        with self._lock:
            self.events.append(event)

    def of(self, detail_type: str) -> list[Any]:
        return [event for event in self.events if event.detail_type.value == detail_type]


class RecordingFanoutQueue:
    """The refresher's fan-out queue: keeps the requests it was sent."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def send(self, requests: list[Any]) -> None:
        self.requests.extend(requests)


# ----------------------------------------------------------------------------------------------------------------
# Account information (issue 5)
# ----------------------------------------------------------------------------------------------------------------

FAKE_BANK_ORIGIN = "https://bank.example.test"


def stet_transaction(number: int, *, amount: str = "10.00", debit: bool = True, status: str = "BOOK") -> dict[str, Any]:
    """A STET 1.4.2 transaction as BPCE sends it (``entryReference`` == ``resourceId``)."""
    body: dict[str, Any] = {
        "resourceId": f"TX{number:05d}",
        "entryReference": f"TX{number:05d}",
        "transactionAmount": {"amount": amount, "currency": "EUR"},
        "creditDebitIndicator": "DBIT" if debit else "CRDT",
        "status": status,
        "valueDate": "2026-11-20",
        "transactionDate": "2026-11-19",
        "remittanceInformation": {"unstructured": [f"PAIEMENT {number}", "CB"]},
    }
    if status == "BOOK":
        body["bookingDate"] = "2026-11-20T00:00:00+0100"
    return body


def stet_account(resource_id: str, iban: str, *, consented: bool = True, name: str = "Compte perso") -> dict[str, Any]:
    """A STET account; consented ones carry balances and links (BPCE mixed model)."""
    body: dict[str, Any] = {
        "resourceId": resource_id,
        "accountId": {"iban": iban, "currency": "EUR"},
        "name": name,
        "product": "COMPTE CHEQUE",
        "cashAccountType": "CACC",
        "usage": "PRIV",
        "psuStatus": "Account Holder",
        "currency": "EUR",
        "_links": {},
    }
    if consented:
        body["balances"] = [
            {
                "balanceType": "CLBD",
                "name": "Solde comptable",
                "balanceAmount": {"amount": "4179.95", "currency": "EUR"},
            }
        ]
        body["_links"] = {
            "balances": {"href": f"/accounts/{resource_id}/balances"},
            "transactions": {"href": f"/accounts/{resource_id}/transactions"},
        }
    return body


@dataclass
class FakeAccountGateway:
    """The banks' AISP data calls (``AccountDataGateway``), in memory.

    Data is STET JSON parsed by the real wire models. ``fail(operation, *errors)`` queues errors raised by the next
    calls of ``operation`` (before any data is served); ``valid_tokens``, when set, makes any other token a 401.
    Transactions are served ``page_size`` a page, newest first, with absolute ``next`` links on ``FAKE_BANK_ORIGIN``.
    """

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    transactions: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    beneficiaries: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    identities: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    page_size: int = 100
    valid_tokens: set[str] | None = None
    calls: list[Call] = field(default_factory=list)
    errors: dict[str, list[Exception]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, operation: str, *errors: Exception) -> None:
        self.errors.setdefault(operation, []).extend(errors)

    def of(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.operation == operation]

    def _enter(self, operation: str, bank_code: str, access_token: str, **kwargs: Any) -> None:
        from aisp.errors import BankTokenInvalidError

        with self.lock:
            self.calls.append(Call(operation, bank_code, {"access_token": access_token, **kwargs}))
            queued = self.errors.get(operation)
            error = queued.pop(0) if queued else None
        if error is not None:
            raise error
        if self.valid_tokens is not None and access_token not in self.valid_tokens:
            raise BankTokenInvalidError("bank rejected the access token", status=401, bank_code=bank_code)

    def get_accounts(self, bank_code: str, *, access_token: str, psu: Any) -> Any:
        from aisp.stet.schemas import AccountList

        self._enter("get_accounts", bank_code, access_token, psu=psu)
        return mapping.accounts(AccountList.model_validate(self.accounts.get(bank_code, {"accounts": []})))

    def put_consents(self, bank_code: str, *, access_token: str, consent: Any, psu: Any) -> None:
        self._enter("put_consents", bank_code, access_token, consent=consent, psu=psu)

    def get_balances(self, bank_code: str, *, access_token: str, account_id: str, psu: Any) -> Any:
        from aisp.errors import BankNotFoundError
        from aisp.stet.schemas import BalanceList

        self._enter("get_balances", bank_code, access_token, account_id=account_id, psu=psu)
        if (bank_code, account_id) not in self.balances:
            raise BankNotFoundError("bank resource not found", status=404, bank_code=bank_code)
        found = BalanceList.model_validate(self.balances[(bank_code, account_id)])
        return [mapping.balance(item) for item in found.balances]

    def page_url(self, bank_code: str, account_id: str, page: int) -> str:
        return f"{FAKE_BANK_ORIGIN}/{bank_code}/stet/psd2/v1.4.2/accounts/{account_id}/transactions?page={page}"

    def get_transactions_page(
        self,
        bank_code: str,
        *,
        access_token: str,
        account_id: str,
        psu: Any,
        date_from: Any = None,
        date_to: Any = None,
        page_url: str | None = None,
    ) -> Any:
        from urllib.parse import parse_qs, urlsplit

        from aisp.errors import BankNotFoundError
        from aisp.stet.schemas import TransactionPage

        self._enter(
            "get_transactions",
            bank_code,
            access_token,
            account_id=account_id,
            psu=psu,
            date_from=date_from,
            date_to=date_to,
            page_url=page_url,
        )
        if (bank_code, account_id) not in self.transactions:
            raise BankNotFoundError("bank resource not found", status=404, bank_code=bank_code)
        entries = self.transactions[(bank_code, account_id)]
        page = int(parse_qs(urlsplit(page_url).query)["page"][0]) if page_url else 1
        chunk = entries[(page - 1) * self.page_size : page * self.page_size]
        has_next = page * self.page_size < len(entries)
        body = {"transactions": chunk, "_links": {"self": {"href": self.page_url(bank_code, account_id, page)}}}
        parsed = TransactionPage.model_validate(body)
        next_url = self.page_url(bank_code, account_id, page + 1) if has_next else None
        return mapping.transactions_page(parsed.model_copy(update={"next_url": next_url}), bank_code=bank_code)

    def get_trusted_beneficiaries(self, bank_code: str, *, access_token: str, psu: Any) -> Any:
        from aisp.stet.schemas import BeneficiaryList

        self._enter("get_trusted_beneficiaries", bank_code, access_token, psu=psu)
        found = BeneficiaryList.model_validate(self.beneficiaries.get(bank_code) or {})
        return [mapping.beneficiary(item) for item in found.beneficiaries]

    def get_end_user_identity(self, bank_code: str, *, access_token: str, psu: Any) -> Any:
        from aisp.stet.schemas import EndUserIdentity

        self._enter("get_end_user_identity", bank_code, access_token, psu=psu)
        identity = self.identities.get(bank_code)
        return None if identity is None else mapping.identity(EndUserIdentity.model_validate(identity))
