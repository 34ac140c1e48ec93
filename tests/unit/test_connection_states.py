"""A connection as it stands at a given moment: the deadlines that change its status (pure domain model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aisp.models.connection import Connection, ConnectionStatus, PendingAuthorization, StatusReason

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _connection(status: ConnectionStatus, **fields) -> Connection:
    return Connection(
        connection_id="cn_1",
        user_id="user-marc",
        bank_code="13807",
        status=status,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        version=3,
        **fields,
    )


def _authorization(resume: ConnectionStatus, reason: StatusReason | None = None) -> PendingAuthorization:
    return PendingAuthorization(
        authorization_id="az_1",
        authorized_at=NOW - timedelta(minutes=6),
        expires_at=NOW - timedelta(minutes=1),
        access_expires_at=NOW + timedelta(minutes=54),
        reauth_due_at=NOW + timedelta(days=90),
        has_refresh_token=True,
        resume_status=resume,
        resume_reason=reason,
    )


def test_a_pending_login_past_its_link_is_failed_login_expired():
    pending = _connection(ConnectionStatus.PENDING, journey_expires_at=NOW)

    assert pending.as_of(NOW - timedelta(seconds=1)) is pending
    expired = pending.as_of(NOW)
    assert (expired.status, expired.status_reason) == (ConnectionStatus.FAILED, StatusReason.LOGIN_EXPIRED)


@pytest.mark.parametrize(
    ("resume", "reason", "expected"),
    [
        (ConnectionStatus.PENDING, None, (ConnectionStatus.FAILED, StatusReason.COMPLETION_EXPIRED)),
        (
            ConnectionStatus.FAILED,
            StatusReason.ACCESS_DENIED,
            (ConnectionStatus.FAILED, StatusReason.COMPLETION_EXPIRED),
        ),
        (
            ConnectionStatus.REAUTH_REQUIRED,
            StatusReason.REAUTH_DUE,
            (ConnectionStatus.REAUTH_REQUIRED, StatusReason.REAUTH_DUE),
        ),
        (ConnectionStatus.REVOKED, None, (ConnectionStatus.REVOKED, None)),
    ],
)
def test_an_uncompleted_authorization_goes_back_where_it_came_from(resume, reason, expected):
    authorized = _connection(ConnectionStatus.AUTHORIZED, pending=_authorization(resume, reason))

    seen = authorized.as_of(NOW)

    assert (seen.status, seen.status_reason) == expected


def test_an_active_connection_with_an_uncompleted_reconnection_stays_active():
    active = _connection(
        ConnectionStatus.ACTIVE, reauth_due_at=NOW + timedelta(days=30), pending=_authorization(ConnectionStatus.ACTIVE)
    )

    assert active.as_of(NOW) is active


def test_an_active_connection_past_its_reauth_due_date_is_reauth_required():
    active = _connection(ConnectionStatus.ACTIVE, reauth_due_at=NOW)

    assert active.as_of(NOW - timedelta(seconds=1)) is active
    seen = active.as_of(NOW)
    assert (seen.status, seen.status_reason) == (ConnectionStatus.REAUTH_REQUIRED, StatusReason.REAUTH_DUE)
    assert seen.reauth_due(NOW)
