"""Fakes of the logic's ports (STYLE §8: fakes over mocks) and a counting wrapper for the real bank gateway."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

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

    def authorization_url(self, bank_code: str, *, redirect_uri: str, state: str) -> str:
        self._record("authorization_url", bank_code, redirect_uri=redirect_uri, state=state)
        query = urlencode({"response_type": "code", "redirect_uri": redirect_uri, "state": state})
        return f"https://www.{bank_code}.sandbox.api.89c3.com/stet/psd2/oauth/authorize?{query}"

    def exchange_code(self, bank_code: str, *, code: str, redirect_uri: str) -> TokenResponse:
        number = self._record("exchange_code", bank_code, code=code, redirect_uri=redirect_uri)
        if self.on_exchange is not None:
            self.on_exchange()
        if self.exchange_error is not None:
            raise self.exchange_error
        return self._tokens(number, with_refresh=self.refresh_token)

    def refresh(self, bank_code: str, *, refresh_token: str) -> TokenResponse:
        number = self._record("refresh", bank_code, refresh_token=refresh_token)
        if self.refresh_error is not None:
            raise self.refresh_error
        return self._tokens(number, with_refresh=False)

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        self._record("revoke", bank_code, token=token, token_type_hint=token_type_hint)
        if self.revoke_error is not None:
            raise self.revoke_error

    def _tokens(self, number: int, *, with_refresh: bool) -> TokenResponse:
        payload: dict[str, Any] = {"access_token": f"access-token-{number:04d}-secret", "token_type": "Bearer"}
        if self.expires_in is not None:
            payload["expires_in"] = self.expires_in
        if with_refresh:
            payload["refresh_token"] = f"refresh-token-{number:04d}-secret"
        return TokenResponse.model_validate(payload)


class CountingBankGateway:
    """Wraps a real gateway and counts calls per operation (thread-safe)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1

    def authorization_url(self, bank_code: str, *, redirect_uri: str, state: str) -> str:
        self._count("authorization_url")
        return self.inner.authorization_url(bank_code, redirect_uri=redirect_uri, state=state)

    def exchange_code(self, bank_code: str, *, code: str, redirect_uri: str) -> TokenResponse:
        self._count("exchange_code")
        return self.inner.exchange_code(bank_code, code=code, redirect_uri=redirect_uri)

    def refresh(self, bank_code: str, *, refresh_token: str) -> TokenResponse:
        self._count("refresh")
        return self.inner.refresh(bank_code, refresh_token=refresh_token)

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        self._count("revoke")
        self.inner.revoke(bank_code, token=token, token_type_hint=token_type_hint)


def serialize_dynamodb_writes() -> Any:
    """Make moto's DynamoDB conditional writes atomic across threads, as DynamoDB's are per item.

    moto evaluates a condition and applies the write in Python without a lock, so two threads can both pass the
    same condition; real DynamoDB never lets that happen. Returns a context manager (``unittest.mock.patch``).
    """
    from contextlib import ExitStack
    from unittest import mock

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    stack = ExitStack()
    for name in ("put_item", "update_item", "delete_item", "get_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, _original=original, **kwargs):
            with lock:
                return _original(self, *args, **kwargs)

        stack.enter_context(mock.patch.object(DynamoDBBackend, name, locked))
    return stack
