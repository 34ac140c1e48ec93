"""The error answers of the fintech-facing HTTP API: our RFC 9457 :class:`Problem` documents, and the
:class:`GatewayError` API Gateway answers by itself (``docs/clients.md``). Every HTTP function imports them at init
(:mod:`aisp.api.errors`), so they live apart from the routes' request and response models (:mod:`aisp.models.api`).
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema


class FieldError(BaseModel):
    """One invalid field of a ``validation_error``: where (never the value sent) and why."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    field: str = Field(
        description="Where: body.<field>, query.<name>, header.<name> or path.<name> (dotted for nested fields)",
        examples=["body.return_url"],
    )
    message: str = Field(description="What is wrong with it", examples=["Field required"])


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``) with a stable machine-readable ``code``.

    Optional members are absent when they have no value (never ``null``).
    """

    model_config = ConfigDict(defer_build=True)

    type: str = Field(description="URI reference identifying the problem type: urn:aisp-gateway:error:<code>")
    title: str = Field(description="A short constant summary of the problem type")
    status: int = Field(description="The HTTP status code")
    code: str = Field(description="Stable error code clients can switch on", examples=["connection_not_found"])
    detail: str | SkipJsonSchema[None] = Field(default=None, description="This occurrence, in a constant sentence")
    request_id: str | SkipJsonSchema[None] = Field(
        default=None, description="The API's request id (also the X-Request-ID header): quote it to support"
    )
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="validation_error: every invalid field"
    )
    retry_at: AwareDatetime | SkipJsonSchema[None] = Field(
        default=None, description="quota_exhausted: when the unattended quota resets (the next Europe/Paris midnight)"
    )


class GatewayError(BaseModel):
    """An answer of API Gateway itself, before or instead of our code (``application/json``).

    ``{"message": "Unauthorized"}`` from the JWT authorizer, ``Not Found`` for a path no route matches, ``Too Many
    Requests`` from the API's throttling, ``Internal Server Error`` or ``Service Unavailable`` when a function failed
    or timed out.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    message: str = Field(examples=["Unauthorized"])


class ErrorResponse(RootModel):  # type: ignore[type-arg]  # the root is declared below, see the comment there
    """An error answer: a ``Problem`` of ours (``application/problem+json``, with a ``code``) or API Gateway's own
    ``GatewayError`` (``application/json``, a ``message`` only)."""

    model_config = ConfigDict(defer_build=True)

    # Declared as a field, not as RootModel[Problem | GatewayError]: parametrizing the generic would build a schema
    # at import.
    root: Problem | GatewayError
