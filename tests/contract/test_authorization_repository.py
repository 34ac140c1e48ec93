"""A login's authorization awaiting completion and its one-time completion value, on both implementations: the
two-item transactions (authorize, complete) happen whole or not at all; a completion value is used up once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp.dal import refresh_shard
from aisp.errors import ConflictError, TokenIntegrityError
from aisp.models.connection import (
    Completion,
    CompletionOutcome,
    ConnectionStatus,
    StatusReason,
    TokenPair,
)
from tests.contract.support import MARC, NEW_PAIR, NOW, PAIR, active, authorization, authorize, epoch

LATER = NOW + timedelta(minutes=2)


# -- authorize --------------------------------------------------------------------------------------------------------


def test_a_first_login_is_authorized_with_its_tokens_sealed_awaiting_completion(backend, repo):
    pending = authorization(at=NOW)

    authorized = authorize(repo, pending=pending)

    assert authorized.status is ConnectionStatus.AUTHORIZED and authorized.version == 1
    assert authorized.pending == pending and not authorized.has_tokens
    assert authorized.created_at == authorized.updated_at == NOW and authorized.connected_at is None
    assert authorized.connection_id == "cn_user-marc"
    assert repo.get_with_all_tokens(*MARC) == (authorized, None, NEW_PAIR)
    assert repo.get_with_tokens(*MARC) == (authorized, None)
    # Due in the refresh index at the completion deadline, so an uncompleted login gets revoked
    item = backend.raw_connection(*MARC)
    assert item["refresh_shard"] == {"N": str(refresh_shard(*MARC))}
    assert item["refresh_due_at"] == {"N": str(epoch(pending.expires_at))}
    assert item["authorization_id"] == {"S": "az_1"}
    # And its completion value is stored for that user, bank and authorization, unused
    assert repo.find_completion("completion-hash-1") == Completion(
        completion_hash="completion-hash-1",
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_user-marc",
        authorization_id="az_1",
        created_at=NOW,
        valid_until=pending.expires_at,
    )
    assert repo.find_completion("another-hash") is None


def test_a_pending_connection_is_authorized_and_forgets_its_journey(repo):
    created = repo.create_pending(
        user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW, journey_expires_at=LATER
    )

    authorized = authorize(repo, expected_version=created.version, now=LATER)

    assert authorized.status is ConnectionStatus.AUTHORIZED and authorized.journey_expires_at is None
    assert authorized.created_at == NOW and authorized.updated_at == LATER
    assert authorized.version == created.version + 1


def test_a_failed_connection_is_authorized_without_its_old_reason(repo):
    created = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)
    failed = repo.fail_journey(created, reason=StatusReason.ACCESS_DENIED, now=NOW)

    authorized = authorize(repo, expected_version=failed.version, now=LATER)

    assert authorized.status is ConnectionStatus.AUTHORIZED and authorized.status_reason is None


def test_reconnecting_an_active_connection_keeps_it_serving_until_completion(backend, repo):
    # Given an ACTIVE connection whose access token expires in 3 minutes
    current = active(repo, expires_in=timedelta(minutes=3))
    pending = authorization(at=NOW, resume=ConnectionStatus.ACTIVE)

    # When a new login is authorized
    authorized = authorize(repo, expected_version=current.version, pending=pending)

    # Then it is still ACTIVE with its serving tokens, the new ones sealed beside them
    assert authorized.status is ConnectionStatus.ACTIVE and authorized.has_tokens
    assert authorized.pending == pending and authorized.version == current.version + 1
    assert repo.get_with_all_tokens(*MARC) == (authorized, PAIR, NEW_PAIR)
    # And due at the earlier of its access expiry and the completion deadline
    assert backend.raw_connection(*MARC)["refresh_due_at"] == {"N": str(epoch(NOW + timedelta(minutes=3)))}


def test_a_reauth_required_connection_is_authorized_with_its_deadline_due(backend, repo):
    current = repo.mark_reauth_required(active(repo), now=NOW)
    pending = authorization(at=LATER, resume=ConnectionStatus.REAUTH_REQUIRED)

    authorized = authorize(repo, expected_version=current.version, pending=pending, now=LATER)

    assert authorized.status is ConnectionStatus.AUTHORIZED and not authorized.has_tokens
    assert backend.raw_connection(*MARC)["refresh_due_at"] == {"N": str(epoch(pending.expires_at))}


def test_a_second_login_replaces_the_authorization_awaiting_completion(repo):
    first = authorize(repo, pending=authorization("az_1"), completion_hash="hash-1")
    second_pair = TokenPair(access_token=SecretStr("access-second"), refresh_token=SecretStr("refresh-second"))

    second = authorize(
        repo,
        expected_version=first.version,
        pending=authorization("az_2", at=LATER),
        completion_hash="hash-2",
        tokens=second_pair,
        now=LATER,
    )

    assert second.pending.authorization_id == "az_2" and second.version == first.version + 1
    assert repo.get_with_all_tokens(*MARC)[2] == second_pair
    # Both completion values exist; only the second names the authorization the record holds
    assert repo.find_completion("hash-1").authorization_id == "az_1"
    assert repo.find_completion("hash-2").authorization_id == "az_2"


def test_an_authorization_at_a_stale_version_writes_nothing_not_even_its_completion(repo):
    current = active(repo)

    with pytest.raises(ConflictError) as caught:
        authorize(repo, expected_version=current.version + 1)

    assert caught.value.message == "transaction condition failed"
    assert caught.value.details == {
        "operation": "authorize_connection",
        "bank_code": "13807",
        "reasons": [None, "ConditionalCheckFailed"],
    }
    assert repo.find_completion("completion-hash-1") is None
    assert repo.get_with_all_tokens(*MARC) == (current, PAIR, None)


def test_an_authorization_believed_first_writes_nothing_when_a_record_exists(repo):
    created = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)

    with pytest.raises(ConflictError) as caught:
        authorize(repo, expected_version=None)

    assert caught.value.details["reasons"] == [None, "ConditionalCheckFailed"]
    assert repo.find(*MARC) == created and repo.find_completion("completion-hash-1") is None


def test_a_completion_value_is_never_overwritten(repo):
    first = authorize(repo, completion_hash="same-hash")
    before = repo.find_completion("same-hash")

    with pytest.raises(ConflictError) as caught:
        authorize(
            repo,
            expected_version=first.version,
            pending=authorization("az_2", at=LATER),
            completion_hash="same-hash",
            now=LATER,
        )

    assert caught.value.details["reasons"] == ["ConditionalCheckFailed", None]
    assert repo.find(*MARC) == first and repo.find_completion("same-hash") == before


# -- complete ---------------------------------------------------------------------------------------------------------


def test_completing_activates_the_authorization_and_uses_up_its_value(backend, repo):
    # Given a login authorized at NOW, whose completion comes a minute later
    pending = authorization(at=NOW)
    authorized = authorize(repo, pending=pending)
    done_at = NOW + timedelta(minutes=1)

    # When it is completed
    activated = repo.complete_authorization(authorized, completion_hash="completion-hash-1", now=done_at)

    # Then it is ACTIVE with the dates of the strong authentication, its tokens the serving ones
    assert activated.status is ConnectionStatus.ACTIVE and activated.has_tokens and activated.pending is None
    assert activated.connected_at == activated.refresh_issued_at == NOW
    assert activated.access_expires_at == pending.access_expires_at
    assert activated.reauth_due_at == pending.reauth_due_at
    assert activated.updated_at == done_at and activated.version == authorized.version + 1
    assert repo.get_with_all_tokens(*MARC) == (activated, NEW_PAIR, None)
    # And due at its access expiry, the authorization forgotten
    item = backend.raw_connection(*MARC)
    assert item["refresh_due_at"] == {"N": str(epoch(pending.access_expires_at))}
    assert not {"pending", "pending_tokens", "authorization_id"} & set(item)
    # And its completion value is used up, for good
    completion = repo.find_completion("completion-hash-1")
    assert (completion.consumed_at, completion.outcome) == (done_at, CompletionOutcome.COMPLETED)
    assert not repo.consume_completion("completion-hash-1", outcome=CompletionOutcome.EXPIRED, now=done_at)


def test_completing_a_reconnection_replaces_the_serving_tokens_and_starts_the_bookkeeping_over(backend, repo):
    current = active(repo, expires_in=timedelta(minutes=3))
    repo.claim_expiry_notices(MARC, {14})
    repo.acquire_lease(MARC, owner="refresher:a:1", now=NOW, lease_seconds=60, due_before=2**40)
    authorized = authorize(
        repo, expected_version=current.version, pending=authorization(refresh=False, resume=ConnectionStatus.ACTIVE)
    )

    activated = repo.complete_authorization(authorized, completion_hash="completion-hash-1", now=LATER)

    assert repo.get_with_all_tokens(*MARC) == (activated, NEW_PAIR, None)
    # No refresh token: out of the index; no lease, no notices (a new strong authentication)
    assert not {"refresh_shard", "refresh_due_at", "lease_owner", "lease_until", "expiry_notices"} & set(
        backend.raw_connection(*MARC)
    )


def test_a_connection_without_an_authorization_cannot_be_completed(repo):
    current = active(repo)

    with pytest.raises(ConflictError) as caught:
        repo.complete_authorization(current, completion_hash="completion-hash-1", now=NOW)

    assert caught.value.message == "no authorization awaits completion"
    assert caught.value.details == {"bank_code": "13807"}


@pytest.mark.parametrize(
    ("case", "reasons"),
    [
        ("used", ["ConditionalCheckFailed", None]),
        ("expired", ["ConditionalCheckFailed", None]),
        ("unknown", ["ConditionalCheckFailed", None]),
        ("another_authorization", ["ConditionalCheckFailed", "ConditionalCheckFailed"]),
        ("stale_version", [None, "ConditionalCheckFailed"]),
    ],
)
def test_a_completion_that_fails_a_condition_writes_nothing(repo, case, reasons):
    # Given an authorization, and the completion attempt of each case
    authorized = authorize(repo)
    completion_hash, connection, now = "completion-hash-1", authorized, LATER
    if case == "used":
        repo.consume_completion(completion_hash, outcome=CompletionOutcome.REJECTED, now=NOW)
    elif case == "expired":
        now = authorized.pending.expires_at
    elif case == "unknown":
        completion_hash = "never-issued"
    elif case == "another_authorization":  # a value of a replaced authorization, tried on the record as read
        connection = authorized.model_copy(update={"pending": authorization("az_other")})
    elif case == "stale_version":
        connection = authorized.model_copy(update={"version": authorized.version - 1})
    completion_before = repo.find_completion("completion-hash-1")

    # When it is tried
    with pytest.raises(ConflictError) as caught:
        repo.complete_authorization(connection, completion_hash=completion_hash, now=now)

    # Then neither the connection nor the completion value changed
    assert caught.value.details == {"operation": "complete_authorization", "bank_code": "13807", "reasons": reasons}
    assert repo.get_with_all_tokens(*MARC) == (authorized, None, NEW_PAIR)
    assert repo.find_completion("completion-hash-1") == completion_before


def test_another_users_completion_value_activates_nothing(repo):
    authorize(repo, completion_hash="marcs-hash")
    eve = authorize(repo, MARC._replace(user_id="user-eve"), completion_hash="eves-hash")

    with pytest.raises(ConflictError):
        repo.complete_authorization(eve, completion_hash="marcs-hash", now=LATER)

    assert repo.find("user-eve", "13807").status is ConnectionStatus.AUTHORIZED
    assert repo.find_completion("marcs-hash").consumed_at is None


def test_two_concurrent_completions_activate_once(backend, repo):
    # Given one authorization and its value sent twice at once
    authorized = authorize(repo)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def complete() -> None:
        barrier.wait()
        try:
            repo.complete_authorization(authorized, completion_hash="completion-hash-1", now=LATER)
            outcomes.append("activated")
        except ConflictError:
            outcomes.append("conflict")

    with backend.serialized():
        threads = [threading.Thread(target=complete) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then exactly one wins, and the connection is ACTIVE once (one version bump)
    assert sorted(outcomes) == ["activated", "conflict"]
    connection = repo.find(*MARC)
    assert connection.status is ConnectionStatus.ACTIVE and connection.version == authorized.version + 1


# -- consume, discard -------------------------------------------------------------------------------------------------


def test_a_completion_value_is_consumed_once_with_its_outcome(repo):
    authorize(repo)

    assert repo.consume_completion("completion-hash-1", outcome=CompletionOutcome.REJECTED, now=LATER)
    assert not repo.consume_completion("completion-hash-1", outcome=CompletionOutcome.EXPIRED, now=LATER)
    assert not repo.consume_completion("never-issued", outcome=CompletionOutcome.EXPIRED, now=LATER)

    completion = repo.find_completion("completion-hash-1")
    assert (completion.consumed_at, completion.outcome) == (LATER, CompletionOutcome.REJECTED)
    assert repo.find_completion("never-issued") is None
    assert repo.find(*MARC).status is ConnectionStatus.AUTHORIZED  # the connection is another write's business


@pytest.mark.parametrize(
    ("resume", "reason", "expected"),
    [
        (ConnectionStatus.PENDING, StatusReason.COMPLETION_EXPIRED, (ConnectionStatus.FAILED, "completion_expired")),
        (ConnectionStatus.FAILED, StatusReason.COMPLETION_REJECTED, (ConnectionStatus.FAILED, "completion_rejected")),
        (ConnectionStatus.REVOKED, StatusReason.COMPLETION_EXPIRED, (ConnectionStatus.REVOKED, None)),
    ],
)
def test_a_discarded_authorization_takes_its_uncompleted_outcome(backend, repo, resume, reason, expected):
    authorized = authorize(repo, pending=authorization(resume=resume))

    ended = repo.discard_authorization(authorized, authorization_id="az_1", reason=reason, now=LATER)

    assert (ended.status, ended.status_reason and ended.status_reason.value) == expected
    assert ended.pending is None and ended.version == authorized.version + 1 and ended.updated_at == LATER
    assert repo.get_with_all_tokens(*MARC) == (ended, None, None)
    assert not {"pending", "pending_tokens", "authorization_id", "refresh_shard", "refresh_due_at"} & set(
        backend.raw_connection(*MARC)
    )


def test_a_discarded_reconnection_leaves_the_active_connection_serving(backend, repo):
    current = active(repo)
    authorized = authorize(
        repo, expected_version=current.version, pending=authorization(resume=ConnectionStatus.ACTIVE)
    )

    ended = repo.discard_authorization(
        authorized, authorization_id="az_1", reason=StatusReason.COMPLETION_EXPIRED, now=LATER
    )

    assert ended.status is ConnectionStatus.ACTIVE and ended.status_reason is None and ended.pending is None
    assert repo.get_with_all_tokens(*MARC) == (ended, PAIR, None)
    assert backend.raw_connection(*MARC)["refresh_due_at"] == {"N": str(epoch(current.access_expires_at))}


def test_discarding_needs_the_record_to_hold_that_authorization_whatever_its_version(repo):
    authorized = authorize(repo)
    seen = repo.find(*MARC)

    # Another authorization id: nothing to do, nothing written
    assert (
        repo.discard_authorization(seen, authorization_id="az_other", reason=StatusReason.LOGIN_EXPIRED, now=LATER)
        is None
    )
    assert repo.find(*MARC) == authorized
    # A record that changed since it was read (bookkeeping or not) is still discarded, and its version still bumps
    repo.acquire_lease(MARC, owner="refresher:a:1", now=NOW, lease_seconds=60, due_before=2**40)
    stale = seen.model_copy(update={"version": seen.version - 1})
    ended = repo.discard_authorization(stale, authorization_id="az_1", reason=StatusReason.LOGIN_EXPIRED, now=LATER)
    assert ended.version == seen.version + 1
    # Once discarded (or completed, or the record deleted), a second discard writes nothing
    assert (
        repo.discard_authorization(seen, authorization_id="az_1", reason=StatusReason.LOGIN_EXPIRED, now=LATER) is None
    )
    assert repo.find(*MARC) == ended
    nobody = seen.model_copy(update={"user_id": "user-nobody"})
    assert (
        repo.discard_authorization(nobody, authorization_id="az_1", reason=StatusReason.LOGIN_EXPIRED, now=LATER)
        is None
    )
    assert repo.find("user-nobody", "13807") is None


def test_a_tampered_pending_blob_is_an_integrity_error(backend, repo):
    authorize(repo)
    authorize(repo, MARC._replace(user_id="user-eve"), completion_hash="eves-hash")
    backend.set_raw_attribute(*MARC, "pending_tokens", backend.raw_connection("user-eve", "13807")["pending_tokens"])

    with pytest.raises(TokenIntegrityError):
        repo.get_with_all_tokens(*MARC)
    assert repo.get_with_tokens(*MARC)[1] is None  # no serving tokens to open
