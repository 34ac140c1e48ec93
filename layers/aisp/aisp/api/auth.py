"""Who is calling: the user is the JWT ``sub`` the HTTP API JWT authorizer validated, and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aisp.errors import UnauthenticatedError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

MAX_SUBJECT_LENGTH: Final = 255


def current_user(event: APIGatewayProxyEventV2) -> str:
    """The authenticated user id: ``requestContext.authorizer.jwt.claims.sub``.

    Raises
    ------
    UnauthenticatedError
        No authorizer context, no ``sub``, or a ``sub`` that is not a short printable string.
    """
    subject = event.request_context.authorizer.jwt_claim.get("sub")
    if (
        not isinstance(subject, str)
        or not subject.strip()
        or len(subject) > MAX_SUBJECT_LENGTH
        or not subject.isprintable()
    ):
        raise UnauthenticatedError("no authenticated user in the request")
    return subject
