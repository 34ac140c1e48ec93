"""The refresher's storage on both implementations: due keys from the sparse index, the lease, failures and the
notices (none of these writes bumps the version; each carries its own condition)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from aisp.dal import refresh_shard
from aisp.errors import ConflictError, InvalidRequestError, KeyServiceError
from aisp.models.connection import ConnectionStatus
from aisp.models.refresh import ConnectionKey, ReauthNotice
from tests.contract.support import MARC, NEW_PAIR, NOW, PAIR, authorization, authorize, epoch
from tests.contract.support import active as _connected


def _active(repo, key=MARC, *, expires_in=timedelta(hours=1), reauth_in=timedelta(days=90)):
    return _connected(repo, key, expires_in=expires_in, reauth_in=reauth_in)


def _same_shard(count: int) -> list[ConnectionKey]:
    keys = [ConnectionKey(f"user-{i}", "13807") for i in range(400)]
    return [k for k in keys if refresh_shard(*k) == refresh_shard(*keys[0])][:count]


# -- due keys ---------------------------------------------------------------------------------------------------------


def test_due_keys_are_those_due_in_the_shard_only(repo):
    # Given two connections of one shard: expiring in 5 min, in 30 min
    due, later = _same_shard(2)
    _active(repo, due, expires_in=timedelta(minutes=5))
    _active(repo, later, expires_in=timedelta(minutes=30))

    # When the refresher asks for what is due within 10 minutes
    bound = epoch(NOW + timedelta(minutes=10))
    found = list(repo.due_keys(refresh_shard(*due), due_before=bound))

    # Then only the due one comes back, and the count agrees
    assert found == [due]
    assert repo.count_due(refresh_shard(*due), due_before=bound) == 1
    assert repo.count_due(refresh_shard(*due), due_before=epoch(NOW + timedelta(hours=1))) == 2


def test_due_keys_come_most_urgent_first_over_every_page(repo):
    keys = _same_shard(5)
    for minutes, key in zip((40, 10, 30, 20, 50), keys, strict=True):
        _active(repo, key, expires_in=timedelta(minutes=minutes))
    shard = refresh_shard(*keys[0])
    other = (shard + 1) % 16

    found = list(repo.due_keys(shard, due_before=2**40, page_size=2))

    assert found == [keys[1], keys[3], keys[2], keys[0], keys[4]]
    assert list(repo.due_keys(shard, due_before=epoch(NOW + timedelta(minutes=10)))) == [keys[1]]
    assert list(repo.due_keys(shard, due_before=epoch(NOW))) == []
    assert repo.count_due(shard, due_before=epoch(NOW)) == 0
    assert repo.count_due(other, due_before=2**40) == 0


# -- the lease --------------------------------------------------------------------------------------------------------


def test_a_lease_is_exclusive_until_it_expires_and_never_bumps_the_version(repo):
    active = _active(repo, expires_in=timedelta(minutes=5))
    bound = epoch(NOW + timedelta(minutes=10))

    # When a refresher takes the lease
    first = repo.acquire_lease(MARC, owner="refresher:a:1", now=NOW, lease_seconds=60, due_before=bound)

    # Then it reads the record and its tokens in the same write, version unchanged
    assert first is not None
    assert first.connection == active
    assert first.tokens == PAIR
    assert first.lease_until == epoch(NOW) + 60
    # And nobody else gets it while it lasts, whatever their condition
    assert repo.acquire_lease(MARC, owner="refresher:b:1", now=NOW, lease_seconds=60, due_before=bound) is None
    assert (
        repo.acquire_lease(MARC, owner="on-demand:x", now=NOW, lease_seconds=30, expected_version=active.version)
        is None
    )
    # But an expired lease (a crashed holder) can be taken over
    later = NOW + timedelta(seconds=61)
    assert repo.acquire_lease(MARC, owner="refresher:b:1", now=later, lease_seconds=60, due_before=bound) is not None


def test_a_lease_is_free_again_the_second_it_ends(repo):
    _active(repo, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)

    assert (
        repo.acquire_lease(MARC, owner="r2", now=NOW + timedelta(seconds=59), lease_seconds=60, due_before=2**40)
        is None
    )
    taken = repo.acquire_lease(MARC, owner="r2", now=NOW + timedelta(seconds=60), lease_seconds=60, due_before=2**40)
    assert taken is not None and taken.lease_until == epoch(NOW) + 120


def test_a_lease_needs_the_record_still_due_or_at_the_version_read(repo):
    active = _active(repo, expires_in=timedelta(minutes=50))

    assert (
        repo.acquire_lease(MARC, owner="r", now=NOW, lease_seconds=60, due_before=epoch(NOW + timedelta(minutes=10)))
        is None
    )
    assert repo.acquire_lease(MARC, owner="o", now=NOW, lease_seconds=30, expected_version=active.version + 1) is None
    assert (
        repo.acquire_lease(ConnectionKey("nobody", "13807"), owner="r", now=NOW, lease_seconds=60, due_before=2**40)
        is None
    )
    assert repo.find("nobody", "13807") is None  # the conditional update created nothing


def test_an_on_demand_lease_needs_an_active_record(repo):
    revoked = repo.revoke(_active(repo), now=NOW, purge_at=NOW + timedelta(days=30))

    assert repo.acquire_lease(MARC, owner="o", now=NOW, lease_seconds=30, expected_version=revoked.version) is None
    assert (
        repo.acquire_lease(ConnectionKey("nobody", "13807"), owner="o", now=NOW, lease_seconds=30, expected_version=1)
        is None
    )


def test_a_lease_needs_a_condition(repo):
    _active(repo)

    with pytest.raises(InvalidRequestError, match="a lease needs due_before or expected_version"):
        repo.acquire_lease(MARC, owner="r", now=NOW, lease_seconds=60)


def test_a_lease_reads_the_bookkeeping_and_the_tokens_awaiting_completion(repo):
    # Given an ACTIVE connection with a transient failure counted, a notice sent and a reconnection authorized
    active = _active(repo, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)
    repo.record_refresh_failure(MARC, owner="r1", failures=3, error="timeout", next_due_at=epoch(NOW) + 60)
    repo.claim_expiry_notices(MARC, {14, 7})
    authorize(repo, expected_version=active.version, pending=authorization(resume=ConnectionStatus.ACTIVE))

    # When the next run takes the lease
    leased = repo.acquire_lease(MARC, owner="r2", now=NOW, lease_seconds=60, due_before=2**40)

    # Then it sees all of it
    assert (leased.tokens, leased.pending_tokens, leased.tokens_unreadable) == (PAIR, NEW_PAIR, False)
    assert leased.refresh_failures == 3 and leased.expiry_notices == frozenset({14, 7})
    # (the authorization moved the next attempt to the earlier of the access expiry and its deadline)
    assert leased.refresh_due_at == epoch(NOW + timedelta(minutes=5)) and leased.reauth_notice is None
    assert leased.lease_owner == "r2" and leased.connection == repo.find(*MARC)


def test_two_refreshers_racing_for_one_lease_get_it_once(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    barrier = threading.Barrier(8)
    owners: list[str] = []

    def take(number: int) -> None:
        barrier.wait()
        leased = repo.acquire_lease(MARC, owner=f"r{number}", now=NOW, lease_seconds=60, due_before=2**40)
        if leased is not None:
            owners.append(leased.lease_owner)

    with backend.serialized():
        threads = [threading.Thread(target=take, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(owners) == 1
    assert backend.raw_connection(*MARC)["lease_owner"] == {"S": owners[0]}


def test_a_lease_is_released_by_its_holder_only(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)

    assert not repo.release_lease(MARC, owner="r2")
    assert backend.raw_connection(*MARC)["lease_owner"] == {"S": "r1"}
    assert repo.release_lease(MARC, owner="r1")
    assert not {"lease_owner", "lease_until"} & set(backend.raw_connection(*MARC))
    assert not repo.release_lease(MARC, owner="r1")
    assert not repo.release_lease(ConnectionKey("nobody", "13807"), owner="r1")
    assert repo.acquire_lease(MARC, owner="r2", now=NOW, lease_seconds=60, due_before=2**40) is not None


def test_storing_refreshed_tokens_needs_the_lease_and_releases_it(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    leased = repo.acquire_lease(MARC, owner="refresher:a:1", now=NOW, lease_seconds=60, due_before=2**40)
    fresh = NEW_PAIR.model_copy(update={"refresh_token": PAIR.refresh_token})

    # Someone who does not hold the lease cannot write tokens
    with pytest.raises(ConflictError):
        repo.store_refreshed_tokens(
            leased.connection, tokens=fresh, access_expires_at=NOW + timedelta(hours=1), now=NOW, lease_owner="other"
        )

    # The holder can, and its write frees the connection and moves the next refresh to the new expiry
    stored = repo.store_refreshed_tokens(
        leased.connection,
        tokens=fresh,
        access_expires_at=NOW + timedelta(hours=1),
        now=NOW,
        lease_owner="refresher:a:1",
    )
    assert stored.version == leased.connection.version + 1
    item = backend.raw_connection(*MARC)
    assert "lease_until" not in item and "lease_owner" not in item
    assert item["refresh_due_at"] == {"N": str(epoch(NOW + timedelta(hours=1)))}
    assert repo.get_with_tokens(*MARC) == (stored, fresh)


def test_a_refresh_with_a_reconnection_awaiting_completion_stays_due_at_its_deadline(backend, repo):
    active = _active(repo, expires_in=timedelta(minutes=3))
    pending = authorization(resume=ConnectionStatus.ACTIVE)
    authorized = authorize(repo, expected_version=active.version, pending=pending)

    repo.store_refreshed_tokens(authorized, tokens=PAIR, access_expires_at=NOW + timedelta(hours=1), now=NOW)

    assert backend.raw_connection(*MARC)["refresh_due_at"] == {"N": str(epoch(pending.expires_at))}
    assert repo.get_with_all_tokens(*MARC)[2] == NEW_PAIR


# -- failures ---------------------------------------------------------------------------------------------------------


def test_a_failure_keeps_the_tokens_pushes_the_next_attempt_and_frees_the_lease(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    leased = repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)
    next_due = epoch(NOW + timedelta(minutes=15))

    assert not repo.record_refresh_failure(MARC, owner="someone-else", failures=1, error="503", next_due_at=next_due)
    assert repo.record_refresh_failure(MARC, owner="r1", failures=1, error="503", next_due_at=next_due)

    item = backend.raw_connection(*MARC)
    assert item["refresh_failures"] == {"N": "1"} and item["refresh_last_error"] == {"S": "503"}
    assert item["refresh_due_at"] == {"N": str(next_due)}
    assert "lease_owner" not in item
    connection, tokens = repo.get_with_tokens(*MARC)
    assert tokens == PAIR and connection.version == leased.connection.version


def test_a_failure_never_puts_a_revoked_connection_back_in_the_index(backend, repo):
    active = _active(repo, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)
    repo.revoke(active, now=NOW, purge_at=NOW + timedelta(days=30))

    assert not repo.record_refresh_failure(MARC, owner="r1", failures=1, error="503", next_due_at=epoch(NOW))

    assert not {"refresh_due_at", "refresh_shard", "lease_owner"} & set(backend.raw_connection(*MARC))
    assert not repo.record_refresh_failure(
        ConnectionKey("nobody", "13807"), owner="r1", failures=1, error="503", next_due_at=epoch(NOW)
    )


def test_a_successful_refresh_resets_the_failure_count(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)
    repo.record_refresh_failure(MARC, owner="r1", failures=2, error="429", next_due_at=epoch(NOW))
    leased = repo.acquire_lease(MARC, owner="r2", now=NOW, lease_seconds=60, due_before=2**40)

    repo.store_refreshed_tokens(
        leased.connection, tokens=PAIR, access_expires_at=NOW + timedelta(hours=1), now=NOW, lease_owner="r2"
    )

    assert not {"refresh_failures", "refresh_last_error"} & set(backend.raw_connection(*MARC))


# -- notices ----------------------------------------------------------------------------------------------------------


def test_a_reauth_with_notice_stays_in_the_index_until_the_notice_is_claimed_once(backend, repo):
    active = _active(repo)

    # When the bank refused the refresh token and the event is left to the refresher
    marked = repo.mark_reauth_required(active, now=NOW, notify=True)

    # Then the record is due now, tokens forgotten, notice pending
    assert marked.status is ConnectionStatus.REAUTH_REQUIRED and not marked.has_tokens
    item = backend.raw_connection(*MARC)
    assert item["reauth_notice"] == {"S": ReauthNotice.PENDING.value}
    assert item["refresh_due_at"] == {"N": str(epoch(NOW))}
    leased = repo.acquire_lease(MARC, owner="r", now=NOW, lease_seconds=60, due_before=epoch(NOW))
    assert leased.reauth_notice is ReauthNotice.PENDING and leased.tokens is None

    # And exactly one claim wins, which takes the record out of the index
    assert repo.claim_reauth_notice(MARC, now=NOW).connection_id == active.connection_id
    assert repo.claim_reauth_notice(MARC, now=NOW) is None
    assert not {"refresh_due_at", "refresh_shard", "lease_owner"} & set(backend.raw_connection(*MARC))

    # A failed publish puts it back
    assert repo.restore_reauth_notice(MARC, retry_due_at=epoch(NOW) + 300)
    assert backend.raw_connection(*MARC)["reauth_notice"] == {"S": "PENDING"}
    assert repo.claim_reauth_notice(MARC, now=NOW) is not None


def test_a_claimed_notice_says_when_it_was_sent_and_a_restored_one_is_due_again(backend, repo):
    marked = repo.mark_reauth_required(_active(repo), now=NOW, notify=True)
    sent_at = NOW + timedelta(minutes=1)

    claimed = repo.claim_reauth_notice(MARC, now=sent_at)

    assert claimed == repo.find(*MARC) and claimed.version == marked.version
    item = backend.raw_connection(*MARC)
    assert item["reauth_notice"] == {"S": "SENT"} and "reauth_notified_at" in item
    assert repo.restore_reauth_notice(MARC, retry_due_at=epoch(NOW) + 300)
    assert not repo.restore_reauth_notice(MARC, retry_due_at=epoch(NOW) + 600)  # only SENT goes back
    item = backend.raw_connection(*MARC)
    assert "reauth_notified_at" not in item
    assert item["refresh_shard"] == {"N": str(refresh_shard(*MARC))}
    assert item["refresh_due_at"] == {"N": str(epoch(NOW) + 300)}
    assert list(repo.due_keys(refresh_shard(*MARC), due_before=epoch(NOW) + 300)) == [MARC]


def test_only_a_reauth_required_record_has_a_notice_to_claim_or_restore(repo):
    _active(repo)

    assert repo.claim_reauth_notice(MARC, now=NOW) is None
    assert not repo.restore_reauth_notice(MARC, retry_due_at=epoch(NOW))
    assert repo.claim_reauth_notice(ConnectionKey("nobody", "13807"), now=NOW) is None
    # Marked without notify: no notice pending
    repo.mark_reauth_required(repo.find(*MARC), now=NOW)
    assert repo.claim_reauth_notice(MARC, now=NOW) is None


def test_expiry_notices_are_claimed_once_per_threshold_and_a_new_sca_resets_them(backend, repo):
    _active(repo)

    assert repo.claim_expiry_notices(MARC, {14})
    assert not repo.claim_expiry_notices(MARC, {14})
    assert not repo.claim_expiry_notices(MARC, {14, 7})  # all or nothing
    assert repo.claim_expiry_notices(MARC, {7})
    repo.release_expiry_notices(MARC, {7})
    assert repo.claim_expiry_notices(MARC, {7})
    assert {int(n) for n in backend.raw_connection(*MARC)["expiry_notices"]["NS"]} == {14, 7}

    # When the user authenticates again (a new reauth_due_at)
    current = repo.find(*MARC)
    repo.activate(
        user_id=MARC.user_id,
        bank_code=MARC.bank_code,
        connection_id=current.connection_id,
        expected_version=current.version,
        tokens=PAIR,
        access_expires_at=NOW + timedelta(hours=1),
        reauth_due_at=NOW + timedelta(days=90),
        now=NOW,
    )

    # Then the notices start over
    assert "expiry_notices" not in backend.raw_connection(*MARC)
    assert repo.claim_expiry_notices(MARC, {14})


def test_expiry_notices_need_an_active_record_and_thresholds(backend, repo):
    active = _active(repo)

    assert not repo.claim_expiry_notices(MARC, set())
    assert "expiry_notices" not in backend.raw_connection(*MARC)
    repo.claim_expiry_notices(MARC, {14})
    repo.release_expiry_notices(MARC, {14})
    assert "expiry_notices" not in backend.raw_connection(*MARC)  # an emptied set is no attribute at all
    repo.release_expiry_notices(MARC, set())
    repo.release_expiry_notices(MARC, {1})  # nothing to forget: fine
    repo.mark_reauth_required(active, now=NOW)
    assert not repo.claim_expiry_notices(MARC, {7})
    assert repo.find(*MARC).version == active.version + 1  # notices never bump the version


def test_releasing_notices_of_a_missing_record_is_a_conflict(repo):
    with pytest.raises(ConflictError) as caught:
        repo.release_expiry_notices(ConnectionKey("nobody", "13807"), {7})

    assert caught.value.details == {"operation": "release_expiry_notices", "bank_code": "13807"}
    assert repo.find("nobody", "13807") is None
    assert not repo.claim_expiry_notices(ConnectionKey("nobody", "13807"), {7})


# -- unreadable tokens ------------------------------------------------------------------------------------------------


def test_a_tampered_blob_is_reported_with_the_lease_held(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    other = _active(repo, ConnectionKey("user-eve", "13807"))
    blob = backend.raw_connection("user-eve", "13807")["tokens"]
    backend.set_raw_attribute(*MARC, "tokens", blob)
    assert other.has_tokens

    leased = repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)

    assert leased.tokens is None and leased.tokens_unreadable
    assert backend.raw_connection(*MARC)["lease_owner"] == {"S": "r1"}


def test_a_key_service_failure_while_opening_the_tokens_leaves_the_lease_held(backend, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    backend.cipher.failure = KeyServiceError("KMS could not decrypt a data key")

    with pytest.raises(KeyServiceError):
        repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)

    # The caller releases it (the refresher does); until then nobody else takes it
    assert backend.raw_connection(*MARC)["lease_owner"] == {"S": "r1"}
    assert repo.acquire_lease(MARC, owner="r2", now=NOW, lease_seconds=60, due_before=2**40) is None
    backend.cipher.failure = None
    assert repo.release_lease(MARC, owner="r1")
