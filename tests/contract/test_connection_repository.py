"""The connections repository's lifecycle writes, on both implementations: conditional on the version read, the
sparse refresh index following the status, tokens sealed for their record and handed out apart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp.dal import REFRESH_SHARDS, refresh_shard
from aisp.errors import ConflictError, ConnectionNotFoundError, KeyServiceError, TokenIntegrityError
from aisp.models.connection import ConnectionStatus, ConsentSnapshot, StatusReason, TokenPair
from tests.contract.support import MARC, NOW, PAIR, active, epoch


def _activate_after(repo, pending):
    return repo.activate(
        user_id=pending.user_id,
        bank_code=pending.bank_code,
        connection_id=pending.connection_id,
        expected_version=pending.version,
        tokens=PAIR,
        access_expires_at=NOW + timedelta(hours=1),
        reauth_due_at=NOW + timedelta(days=90),
        now=NOW,
    )


# -- reads ------------------------------------------------------------------------------------------------------------


def test_reads_of_a_missing_connection(repo):
    assert repo.find("user-marc", "13807") is None
    with pytest.raises(ConnectionNotFoundError) as caught:
        repo.get_with_tokens("user-marc", "13807")
    assert caught.value.details == {"bank_code": "13807"}
    with pytest.raises(ConnectionNotFoundError) as caught:
        repo.get_with_all_tokens("user-marc", "13807")
    assert caught.value.details == {"bank_code": "13807"}


def test_listing_is_per_user(repo):
    active(repo, MARC._replace(bank_code="13807"), via_pending=True)
    repo.create_pending(user_id="user-marc", bank_code="17515", connection_id="cn_2", now=NOW)
    active(repo, MARC._replace(user_id="user-eve"), via_pending=True)

    assert [(c.user_id, c.bank_code) for c in repo.list_for_user("user-marc")] == [
        ("user-marc", "13807"),
        ("user-marc", "17515"),
    ]
    assert repo.list_for_user("user-nobody") == []
    with pytest.raises(ConnectionNotFoundError):
        repo.get_with_tokens("user-eve", "17515")


def test_listing_is_ordered_by_bank_whatever_the_order_of_creation(repo):
    for bank_code in ("17515", "13807", "16275"):
        repo.create_pending(user_id="user-marc", bank_code=bank_code, connection_id=f"cn_{bank_code}", now=NOW)

    listed = repo.list_for_user("user-marc")

    assert [c.bank_code for c in listed] == ["13807", "16275", "17515"]
    assert listed[0] == repo.find("user-marc", "13807")


# -- create, activate -------------------------------------------------------------------------------------------------


def test_activate_stores_encrypted_tokens_and_enters_the_refresh_index(backend, repo):
    # Given a PENDING connection
    pending = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)
    assert pending.status is ConnectionStatus.PENDING and pending.version == 1 and not pending.has_tokens

    # When the tokens of a strong authentication are stored
    active_connection = _activate_after(repo, pending)

    # Then the record is ACTIVE, versioned, and its tokens decrypt through the repository only
    assert active_connection.status is ConnectionStatus.ACTIVE
    assert active_connection.version == 2
    assert active_connection.access_expires_at == NOW + timedelta(hours=1)
    assert active_connection.refresh_issued_at == NOW and active_connection.connected_at == NOW
    connection, tokens = repo.get_with_tokens("user-marc", "13807")
    assert connection == active_connection
    assert tokens.access_token.get_secret_value() == "access-aaaa-1111"
    assert tokens.refresh_token.get_secret_value() == "refresh-rrrr-2222"
    item = backend.raw_connection("user-marc", "13807")
    assert item["refresh_shard"] == {"N": str(refresh_shard("user-marc", "13807"))}
    assert item["refresh_due_at"] == {"N": str(int((NOW + timedelta(hours=1)).timestamp()))}
    assert "purge_at" not in item


def test_a_pending_connection_as_created(repo):
    created = repo.create_pending(
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_1",
        now=NOW,
        journey_expires_at=NOW + timedelta(minutes=10),
    )

    assert created == repo.find("user-marc", "13807")
    assert (created.connection_id, created.user_id, created.bank_code) == ("cn_1", "user-marc", "13807")
    assert created.created_at == created.updated_at == NOW
    assert created.journey_expires_at == NOW + timedelta(minutes=10)
    assert created.status_reason is None and created.pending is None and created.consent is None
    assert repo.get_with_all_tokens("user-marc", "13807") == (created, None, None)


def test_create_and_activate_refuse_to_overwrite(repo):
    active(repo, via_pending=True)

    with pytest.raises(ConflictError) as created:
        repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_other", now=NOW)
    with pytest.raises(ConflictError) as activated:  # "there was no item" is a stale belief too
        repo.activate(
            user_id="user-marc",
            bank_code="13807",
            connection_id="cn_other",
            expected_version=None,
            tokens=PAIR,
            access_expires_at=NOW,
            reauth_due_at=NOW,
            now=NOW,
        )
    assert repo.find("user-marc", "13807").connection_id == "cn_user-marc"
    assert created.value.message == "conditional write failed"
    assert created.value.details == {
        "operation": "create_connection",
        "bank_code": "13807",
        "connection_id": "cn_other",
    }
    assert activated.value.details == {
        "operation": "activate_connection",
        "bank_code": "13807",
        "expected_version": None,
    }


def test_activate_without_a_record_creates_it_at_version_one(repo):
    created = active(repo)

    assert created.version == 1 and created.status is ConnectionStatus.ACTIVE
    assert created.created_at == created.connected_at == NOW
    assert repo.find(*MARC) == created


def test_activate_at_a_stale_version_writes_nothing(repo):
    pending = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)
    later = NOW + timedelta(minutes=1)

    with pytest.raises(ConflictError) as caught:
        repo.activate(
            user_id="user-marc",
            bank_code="13807",
            connection_id="cn_1",
            expected_version=pending.version + 1,
            tokens=PAIR,
            access_expires_at=later,
            reauth_due_at=later,
            now=later,
        )

    assert caught.value.details["expected_version"] == pending.version + 1
    assert repo.get_with_tokens("user-marc", "13807") == (pending, None)


def test_a_new_strong_authentication_keeps_the_creation_date_and_forgets_the_refresh_bookkeeping(backend, repo):
    first = active(repo, via_pending=True, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="refresher:a:1", now=NOW, lease_seconds=60, due_before=2**40)
    repo.record_refresh_failure(MARC, owner="refresher:a:1", failures=2, error="503", next_due_at=epoch(NOW))
    repo.claim_expiry_notices(MARC, {14})
    later = NOW + timedelta(days=1)

    again = repo.activate(
        user_id="user-marc",
        bank_code="13807",
        connection_id=first.connection_id,
        expected_version=first.version,
        tokens=TokenPair(access_token=SecretStr("only-access")),
        access_expires_at=later + timedelta(hours=1),
        reauth_due_at=later + timedelta(days=90),
        now=later,
    )

    assert again.created_at == NOW and again.connected_at == again.refresh_issued_at == again.updated_at == later
    assert again.version == first.version + 1
    item = backend.raw_connection(*MARC)
    # No refresh token: out of the refresh index; and none of the refresher's bookkeeping survives
    assert not {
        "refresh_shard",
        "refresh_due_at",
        "lease_until",
        "lease_owner",
        "refresh_failures",
        "refresh_last_error",
        "expiry_notices",
    } & set(item)


# -- refreshed tokens -------------------------------------------------------------------------------------------------


def test_a_stale_version_write_fails_and_keeps_the_previous_refresh_token(repo):
    # Given an ACTIVE connection read by two writers
    seen_by_first = active(repo, via_pending=True)
    seen_by_second = repo.find("user-marc", "13807")

    # When the first stores refreshed tokens, then the second writes with the version it read
    repo.store_refreshed_tokens(
        seen_by_first,
        tokens=TokenPair(access_token=SecretStr("access-new-1"), refresh_token=PAIR.refresh_token),
        access_expires_at=NOW + timedelta(hours=2),
        now=NOW,
    )
    with pytest.raises(ConflictError) as caught:
        repo.store_refreshed_tokens(
            seen_by_second,
            tokens=TokenPair(access_token=SecretStr("access-new-2"), refresh_token=SecretStr("refresh-lost")),
            access_expires_at=NOW + timedelta(hours=3),
            now=NOW,
        )

    # Then the stored item is the first writer's: the refresh token was never lost or replaced
    connection, tokens = repo.get_with_tokens("user-marc", "13807")
    assert connection.version == seen_by_first.version + 1
    assert tokens.access_token.get_secret_value() == "access-new-1"
    assert tokens.refresh_token.get_secret_value() == "refresh-rrrr-2222"
    assert connection.access_expires_at == NOW + timedelta(hours=2)
    assert caught.value.details == {
        "operation": "store_refreshed_tokens",
        "bank_code": "13807",
        "expected_version": seen_by_second.version,
    }


def test_refreshed_tokens_are_refused_once_the_connection_is_not_active(repo):
    active_connection = active(repo, via_pending=True)
    revoked = repo.revoke(active_connection, now=NOW, purge_at=NOW + timedelta(days=30))

    with pytest.raises(ConflictError):
        repo.store_refreshed_tokens(revoked, tokens=PAIR, access_expires_at=NOW, now=NOW)


def test_refreshed_tokens_without_a_refresh_token_leave_the_index(backend, repo):
    current = active(repo)
    later = NOW + timedelta(minutes=50)

    stored = repo.store_refreshed_tokens(
        current,
        tokens=TokenPair(access_token=SecretStr("access-only")),
        access_expires_at=later + timedelta(hours=1),
        now=later,
    )

    assert stored.updated_at == later and stored.access_expires_at == later + timedelta(hours=1)
    assert stored.connected_at == NOW and stored.version == current.version + 1
    assert repo.get_with_tokens(*MARC)[1] == TokenPair(access_token=SecretStr("access-only"))
    assert not {"refresh_shard", "refresh_due_at"} & set(backend.raw_connection(*MARC))


# -- reauth, revoke, reopen -------------------------------------------------------------------------------------------


def test_reauth_required_leaves_the_index_and_forgets_the_tokens(backend, repo):
    active_connection = active(repo, via_pending=True)

    marked = repo.mark_reauth_required(active_connection, now=NOW)

    assert marked.status is ConnectionStatus.REAUTH_REQUIRED and not marked.has_tokens
    item = backend.raw_connection("user-marc", "13807")
    assert not {"tokens", "refresh_shard", "refresh_due_at"} & set(item)


def test_reauth_required_says_why_and_is_written_once(repo):
    current = active(repo)

    marked = repo.mark_reauth_required(current, now=NOW, reason=StatusReason.REAUTH_DUE)

    assert marked.status_reason is StatusReason.REAUTH_DUE and marked.version == current.version + 1
    assert repo.mark_reauth_required(current.model_copy(update={"version": marked.version}), now=NOW).status_reason is (
        StatusReason.ACCESS_REVOKED
    )
    with pytest.raises(ConflictError) as caught:  # a second writer of the same transition loses
        repo.mark_reauth_required(current, now=NOW, notify=True)
    assert caught.value.details["operation"] == "mark_reauth_required"


def test_revoke_forgets_tokens_and_consent_and_sets_the_purge_ttl(backend, repo):
    active_connection = active(repo, via_pending=True)

    revoked = repo.revoke(active_connection, now=NOW, purge_at=NOW + timedelta(days=30))

    assert revoked.status is ConnectionStatus.REVOKED
    assert revoked.revoked_at == NOW and not revoked.has_tokens
    assert repo.get_with_tokens("user-marc", "13807") == (revoked, None)
    item = backend.raw_connection("user-marc", "13807")
    assert not {"tokens", "consent", "refresh_shard", "refresh_due_at", "access_expires_at"} & set(item)
    assert item["purge_at"] == {"N": str(int((NOW + timedelta(days=30)).timestamp()))}
    # And a reconnection brings it back to PENDING, no longer purged, same id
    reopened = repo.reopen(revoked, now=NOW)
    assert reopened.status is ConnectionStatus.PENDING and reopened.connection_id == active_connection.connection_id
    assert "purge_at" not in backend.raw_connection("user-marc", "13807")


def test_revoke_at_a_stale_version_writes_nothing(repo):
    current = active(repo)
    repo.store_consent(current, consent=ConsentSnapshot(balances=["FR7613807000"]), now=NOW)

    with pytest.raises(ConflictError) as caught:
        repo.revoke(current, now=NOW, purge_at=NOW + timedelta(days=30))

    assert caught.value.details == {"operation": "revoke_connection", "bank_code": "13807", "expected_version": 1}
    assert repo.find(*MARC).status is ConnectionStatus.ACTIVE


def test_a_failed_journey_reopens_as_pending_with_a_new_link(repo):
    created = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)
    failed = repo.fail_journey(created, reason=StatusReason.ACCESS_DENIED, now=NOW + timedelta(minutes=1))
    later = NOW + timedelta(hours=1)

    reopened = repo.reopen(failed, now=later, journey_expires_at=later + timedelta(minutes=10))

    assert reopened.status is ConnectionStatus.PENDING and reopened.status_reason is None
    assert reopened.journey_expires_at == later + timedelta(minutes=10)
    assert reopened.version == failed.version + 1 and reopened.updated_at == later
    assert reopened.connection_id == "cn_1" and reopened.created_at == NOW
    with pytest.raises(ConflictError) as caught:
        repo.reopen(failed, now=later)
    assert caught.value.details == {"operation": "reopen_connection", "bank_code": "13807", "expected_version": 2}


def test_reopen_without_a_new_link_forgets_the_old_one(repo):
    created = repo.create_pending(
        user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW, journey_expires_at=NOW
    )
    revoked = repo.revoke(created, now=NOW, purge_at=NOW + timedelta(days=30))
    assert revoked.journey_expires_at is None and revoked.revoked_at == NOW

    reopened = repo.reopen(revoked, now=NOW)

    assert reopened.journey_expires_at is None and reopened.revoked_at is None


# -- the login journey ------------------------------------------------------------------------------------------------


def test_a_pending_journey_notes_its_new_link_without_a_new_version(repo):
    created = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)

    assert repo.note_journey(created, journey_expires_at=NOW + timedelta(minutes=10))

    noted = repo.find(*MARC)
    assert noted.journey_expires_at == NOW + timedelta(minutes=10)
    assert (noted.version, noted.updated_at) == (created.version, created.updated_at)


def test_only_a_pending_journey_notes_a_new_link(repo):
    current = active(repo)

    assert not repo.note_journey(current, journey_expires_at=NOW + timedelta(minutes=10))
    assert repo.find(*MARC) == current
    assert not repo.note_journey(
        current.model_copy(update={"user_id": "user-nobody"}), journey_expires_at=NOW + timedelta(minutes=10)
    )
    assert repo.find("user-nobody", "13807") is None


def test_a_journey_fails_once_and_only_while_pending(repo):
    created = repo.create_pending(
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_1",
        now=NOW,
        journey_expires_at=NOW + timedelta(minutes=10),
    )

    failed = repo.fail_journey(created, reason=StatusReason.LOGIN_EXPIRED, now=NOW + timedelta(minutes=11))

    assert failed.status is ConnectionStatus.FAILED and failed.status_reason is StatusReason.LOGIN_EXPIRED
    assert failed.journey_expires_at is None and failed.version == created.version + 1
    assert failed.updated_at == NOW + timedelta(minutes=11)
    with pytest.raises(ConflictError):  # at the version read, but no longer PENDING
        repo.fail_journey(failed, reason=StatusReason.ACCESS_DENIED, now=NOW)
    with pytest.raises(ConflictError) as stale:
        repo.fail_journey(created, reason=StatusReason.ACCESS_DENIED, now=NOW)
    assert stale.value.details == {"operation": "fail_journey", "bank_code": "13807", "expected_version": 1}
    assert repo.find(*MARC) == failed


# -- consent ----------------------------------------------------------------------------------------------------------


def test_a_consent_is_stored_on_an_active_connection_at_the_version_read(repo):
    current = active(repo)
    consent = ConsentSnapshot(balances=["FR7613807000"], transactions=[], psu_identity=True, updated_at=NOW)

    stored = repo.store_consent(current, consent=consent, now=NOW + timedelta(minutes=1))

    assert stored.consent == consent and stored.version == current.version + 1
    assert stored.updated_at == NOW + timedelta(minutes=1)
    assert repo.find(*MARC) == stored
    with pytest.raises(ConflictError) as stale:
        repo.store_consent(current, consent=consent, now=NOW)
    assert stale.value.details["operation"] == "store_consent"
    revoked = repo.revoke(stored, now=NOW, purge_at=NOW + timedelta(days=30))
    with pytest.raises(ConflictError):  # at the version read, but no longer ACTIVE
        repo.store_consent(revoked, consent=consent, now=NOW)
    assert repo.find(*MARC).consent is None


# -- sealed tokens ----------------------------------------------------------------------------------------------------


def test_a_token_blob_copied_into_another_record_does_not_decrypt(backend, repo):
    # Given Marc's and Eve's connections, and Eve copying Marc's blob into her own record
    active(repo, MARC, via_pending=True)
    active(repo, MARC._replace(user_id="user-eve"), tokens=TokenPair(access_token=SecretStr("eve-access")))
    blob = backend.raw_connection("user-marc", "13807")["tokens"]
    backend.set_raw_attribute("user-eve", "13807", "tokens", blob)

    # Then reading Eve's tokens fails instead of handing out Marc's
    with pytest.raises(TokenIntegrityError):
        repo.get_with_tokens("user-eve", "13807")
    assert repo.get_with_tokens("user-marc", "13807")[1].access_token.get_secret_value() == "access-aaaa-1111"


def test_a_truncated_token_blob_is_an_integrity_error(backend, repo):
    active(repo)
    blob = backend.raw_connection(*MARC)["tokens"]["B"]
    backend.set_raw_attribute(*MARC, "tokens", {"B": blob[:-1]})

    with pytest.raises(TokenIntegrityError):
        repo.get_with_tokens(*MARC)
    with pytest.raises(TokenIntegrityError):
        repo.get_with_all_tokens(*MARC)
    assert repo.find(*MARC).has_tokens


def test_tokens_that_cannot_be_sealed_are_not_written(backend, repo):
    current = active(repo)
    backend.cipher.failure = KeyServiceError("KMS could not generate a data key")

    with pytest.raises(KeyServiceError):
        repo.store_refreshed_tokens(current, tokens=PAIR, access_expires_at=NOW + timedelta(hours=2), now=NOW)
    with pytest.raises(KeyServiceError):
        active(repo, MARC._replace(user_id="user-eve"))

    backend.cipher.failure = None
    assert repo.get_with_tokens(*MARC) == (current, PAIR)
    assert repo.find("user-eve", "13807") is None


def test_the_refresh_index_is_sparse(repo):
    # Given one ACTIVE connection with a refresh token, one without, one PENDING
    active(repo, MARC._replace(user_id="user-a"), via_pending=True)
    active(repo, MARC._replace(user_id="user-b"), tokens=TokenPair(access_token=SecretStr("only-access")))
    repo.create_pending(user_id="user-c", bank_code="13807", connection_id="cn_c", now=NOW)

    # When the refresher reads the index, shard by shard
    due = [key for shard in range(REFRESH_SHARDS) for key in repo.due_keys(shard, due_before=2**40)]

    # Then only the refreshable connection is there
    assert due == [("user-a", "13807")]
