"""``Idempotency-Key`` for the API's writes (``PUT .../consent``, ``POST /v1/connections``): Powertools idempotency
over DynamoDB ``IdempotencyTable``, one engine for every keyed route.

A keyed call is a pydantic model holding who (``user_id``, and the bank when the path names it), the client's
``idempotency_key`` and the request's payload. The record is keyed on the first two, so two users never collide, and
validated against the payload: the same key with another body is ``idempotency_key_reused`` (422), a retry while the
first runs is ``request_in_progress`` (409), and a failure deletes the record so that the client may retry with the
same key. Where the records go (:class:`IdempotencyStore`) comes from ``aisp.wiring``; the persistence layer (boto3)
is built on the first keyed call, never at import.

``sealed=True`` stores the answer encrypted under a key derived from the ``Idempotency-Key`` itself (HMAC-SHA256 of
a fixed label, then AES-256-GCM bound to the user and the operation), for answers that carry a secret: a connection's
login link holds its OAuth ``state``, which the states table keeps only as a hash. A reader of the table holds a hash
of the key, not the key, so cannot open it. Design: ``docs/clients.md`` (idempotent retries).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import BaseModel

from aisp import errors

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = ["Idempotent", "IdempotencyStore", "KeyedCall"]

_LABEL: Final = b"aisp:idempotent-answer:v1"
_NONCE_BYTES: Final = 12
_SEALED: Final = "sealed"


class KeyedCall(Protocol):
    """What a keyed call (a pydantic model) carries besides its payload."""

    @property
    def user_id(self) -> str: ...

    @property
    def idempotency_key(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class IdempotencyStore:
    """Where keyed calls are recorded (``IDEMPOTENCY_TABLE_NAME``) and for how long. Compared by identity: a new
    store (``aisp.wiring.reset()``) makes every keyed route build its persistence layer again."""

    table_name: str
    expires_after_seconds: int


class Idempotent[Call: KeyedCall, Answer: BaseModel]:
    """``function(call=..., **kwargs) -> answer`` run at most once per (``event_key`` of the call) within the TTL.

    Parameters
    ----------
    function
        The unit of work; called with keyword arguments only. Its module and qualified name prefix the record ids.
    event_key
        JMESPath over the call naming who and which key, e.g. ``"[user_id, bank_code, idempotency_key]"``.
    payload
        JMESPath over the call naming the request body the key is bound to, e.g. ``"consent"``.
    answer
        The answer's model (stored as JSON, given back as this model on a replay).
    sealed
        Store the answer sealed under the ``Idempotency-Key`` (for answers that carry a secret).
    """

    def __init__(
        self,
        function: Callable[..., Answer],
        *,
        event_key: str,
        payload: str,
        answer: type[Answer],
        sealed: bool = False,
    ) -> None:
        self._function = function
        self._event_key = event_key
        self._payload = payload
        self._answer = answer
        self._sealed = sealed
        self._lock = threading.Lock()
        self._built: tuple[IdempotencyStore, Callable[..., Any], IdempotencyConfig] | None = None

    def __call__(
        self,
        call: Call,
        *,
        store: IdempotencyStore,
        lambda_context: LambdaContext | None,
        details: dict[str, str],
        **kwargs: Any,
    ) -> Answer:
        """Run (or replay) the call, recorded in ``store``.

        Raises
        ------
        IdempotencyKeyReusedError, RequestInProgressError
            The key was used with another payload, or its first request is still running.
        PersistenceError
            The idempotency table failed.
        """
        wrapped, config = self._build(store)
        if lambda_context is not None:
            config.register_lambda_context(lambda_context)
        from aws_lambda_powertools.utilities.idempotency import exceptions as idem  # noqa: PLC0415 - loaded by now

        try:
            stored = wrapped(call=call, **kwargs)
        except idem.IdempotencyValidationError:
            raise errors.IdempotencyKeyReusedError(
                "this Idempotency-Key was used with a different request", details=details
            ) from None
        except idem.IdempotencyAlreadyInProgressError:
            raise errors.RequestInProgressError(
                "a request with this Idempotency-Key is in progress", details=details
            ) from None
        except (idem.IdempotencyPersistenceLayerError, idem.IdempotencyInconsistentStateError) as exc:
            raise errors.PersistenceError(
                "idempotency store failed", details={**details, "error_type": type(exc).__name__}
            ) from exc
        if not self._sealed:
            answer: Answer = stored
            return answer
        return self._answer.model_validate_json(_open(stored[_SEALED], call=call, scope=self._scope))

    @property
    def _scope(self) -> str:
        return f"{self._function.__module__}.{self._function.__qualname__}"

    def _build(self, store: IdempotencyStore) -> tuple[Callable[..., Any], IdempotencyConfig]:
        # One persistence layer per keyed route (Powertools names records after the first function it serves).
        with self._lock:
            if self._built is None or self._built[0] is not store:
                self._built = (store, *self._make(store))
            return self._built[1], self._built[2]

    def _make(self, store: IdempotencyStore) -> tuple[Callable[..., Any], IdempotencyConfig]:
        from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415 - boto3 on the first keyed call
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )
        from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (  # noqa: PLC0415
            PydanticSerializer,
        )

        config = IdempotencyConfig(
            event_key_jmespath=self._event_key,
            payload_validation_jmespath=self._payload,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=store.expires_after_seconds,
            hash_function="sha256",
        )
        persistence = DynamoDBPersistenceLayer(table_name=store.table_name)
        if self._sealed:
            return (
                idempotent_function(
                    self._sealing(self._function),
                    data_keyword_argument="call",
                    persistence_store=persistence,
                    config=config,
                ),
                config,
            )
        return (
            idempotent_function(
                self._function,
                data_keyword_argument="call",
                persistence_store=persistence,
                config=config,
                output_serializer=PydanticSerializer(model=self._answer),
            ),
            config,
        )

    def _sealing(self, function: Callable[..., Answer]) -> Callable[..., dict[str, str]]:
        scope = self._scope

        @functools.wraps(function)  # the record ids keep the function's name
        def sealed(*, call: Call, **kwargs: Any) -> dict[str, str]:
            answer = function(call=call, **kwargs)
            return {_SEALED: _seal(answer.model_dump_json().encode(), call=call, scope=scope)}

        return sealed


def _key(idempotency_key: str) -> bytes:
    return hmac.new(idempotency_key.encode("utf-8"), _LABEL, hashlib.sha256).digest()


def _associated_data(call: KeyedCall, scope: str) -> bytes:
    return b"\x00".join((_LABEL, scope.encode("utf-8"), call.user_id.encode("utf-8")))


def _seal(plain: bytes, *, call: KeyedCall, scope: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - keyed calls only

    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(call.idempotency_key)).encrypt(nonce, plain, _associated_data(call, scope))
    return base64.b64encode(nonce + sealed).decode("ascii")


def _open(blob: str, *, call: KeyedCall, scope: str) -> bytes:
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    raw = base64.b64decode(blob)
    try:
        return AESGCM(_key(call.idempotency_key)).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(call, scope)
        )
    except InvalidTag:
        # Only a record written for another key or user could do this; it is not the answer to this call.
        raise errors.PersistenceError("stored idempotent answer does not open", details={}) from None
