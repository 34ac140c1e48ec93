"""The refresher's storage under moto: due keys from the sparse index, the lease, failures and the notices."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.dal import DynamoConnectionRepository, refresh_shard
from aisp.errors import ConflictError
from aisp.models.connection import ConnectionStatus, TokenPair
from aisp.models.refresh import ConnectionKey, ReauthNotice
from tests.fakes import START

NOW = START
PAIR = TokenPair(access_token=SecretStr("access-aaaa-1111"), refresh_token=SecretStr("refresh-rrrr-2222"))
MARC = ConnectionKey("user-marc", "13807")


def epoch(moment) -> int:
    return int(moment.timestamp())


@pytest.fixture
def repo(aws):
    return DynamoConnectionRepository(cipher=wiring.token_cipher)


def _active(repo, key=MARC, *, expires_in=timedelta(hours=1), reauth_in=timedelta(days=90)):
    return repo.activate(
        user_id=key.user_id,
        bank_code=key.bank_code,
        connection_id=f"cn_{key.user_id}",
        expected_version=None,
        tokens=PAIR,
        access_expires_at=NOW + expires_in,
        reauth_due_at=NOW + reauth_in,
        now=NOW,
    )


def test_due_keys_are_those_due_in_the_shard_only(aws, repo):
    # Given three connections of one shard: expiring in 5 min, in 30 min, and one with no refresh token
    keys = [ConnectionKey(f"user-{i}", "13807") for i in range(40)]
    same_shard = [k for k in keys if refresh_shard(*k) == refresh_shard(*keys[0])][:2]
    due, later = same_shard
    _active(repo, due, expires_in=timedelta(minutes=5))
    _active(repo, later, expires_in=timedelta(minutes=30))

    # When the refresher asks for what is due within 10 minutes
    bound = epoch(NOW + timedelta(minutes=10))
    found = list(repo.due_keys(refresh_shard(*due), due_before=bound))

    # Then only the due one comes back, and the count agrees
    assert found == [due]
    assert repo.count_due(refresh_shard(*due), due_before=bound) == 1
    assert repo.count_due(refresh_shard(*due), due_before=epoch(NOW + timedelta(hours=1))) == 2


def test_a_lease_is_exclusive_until_it_expires_and_never_bumps_the_version(aws, repo):
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


def test_a_lease_needs_the_record_still_due_or_at_the_version_read(aws, repo):
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


def test_storing_refreshed_tokens_needs_the_lease_and_releases_it(aws, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    leased = repo.acquire_lease(MARC, owner="refresher:a:1", now=NOW, lease_seconds=60, due_before=2**40)
    fresh = TokenPair(access_token=SecretStr("access-new"), refresh_token=SecretStr("refresh-rrrr-2222"))

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
    item = aws.raw_connection(*MARC)
    assert "lease_until" not in item and "lease_owner" not in item
    assert item["refresh_due_at"] == {"N": str(epoch(NOW + timedelta(hours=1)))}


def test_a_failure_keeps_the_tokens_pushes_the_next_attempt_and_frees_the_lease(aws, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    leased = repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)
    next_due = epoch(NOW + timedelta(minutes=15))

    assert not repo.record_refresh_failure(MARC, owner="someone-else", failures=1, error="503", next_due_at=next_due)
    assert repo.record_refresh_failure(MARC, owner="r1", failures=1, error="503", next_due_at=next_due)

    item = aws.raw_connection(*MARC)
    assert item["refresh_failures"] == {"N": "1"} and item["refresh_last_error"] == {"S": "503"}
    assert item["refresh_due_at"] == {"N": str(next_due)}
    assert "lease_owner" not in item
    connection, tokens = repo.get_with_tokens(*MARC)
    assert tokens == PAIR and connection.version == leased.connection.version


def test_a_failure_never_puts_a_revoked_connection_back_in_the_index(aws, repo):
    active = _active(repo, expires_in=timedelta(minutes=5))
    repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)
    repo.revoke(active, now=NOW, purge_at=NOW + timedelta(days=30))

    assert not repo.record_refresh_failure(MARC, owner="r1", failures=1, error="503", next_due_at=epoch(NOW))

    assert not {"refresh_due_at", "refresh_shard", "lease_owner"} & set(aws.raw_connection(*MARC))


def test_a_reauth_with_notice_stays_in_the_index_until_the_notice_is_claimed_once(aws, repo):
    active = _active(repo)

    # When the bank refused the refresh token and the event is left to the refresher
    marked = repo.mark_reauth_required(active, now=NOW, notify=True)

    # Then the record is due now, tokens forgotten, notice pending
    assert marked.status is ConnectionStatus.REAUTH_REQUIRED and not marked.has_tokens
    item = aws.raw_connection(*MARC)
    assert item["reauth_notice"] == {"S": ReauthNotice.PENDING.value}
    assert item["refresh_due_at"] == {"N": str(epoch(NOW))}
    leased = repo.acquire_lease(MARC, owner="r", now=NOW, lease_seconds=60, due_before=epoch(NOW))
    assert leased.reauth_notice is ReauthNotice.PENDING and leased.tokens is None

    # And exactly one claim wins, which takes the record out of the index
    assert repo.claim_reauth_notice(MARC, now=NOW).connection_id == active.connection_id
    assert repo.claim_reauth_notice(MARC, now=NOW) is None
    assert not {"refresh_due_at", "refresh_shard", "lease_owner"} & set(aws.raw_connection(*MARC))

    # A failed publish puts it back
    assert repo.restore_reauth_notice(MARC, retry_due_at=epoch(NOW) + 300)
    assert aws.raw_connection(*MARC)["reauth_notice"] == {"S": "PENDING"}
    assert repo.claim_reauth_notice(MARC, now=NOW) is not None


def test_expiry_notices_are_claimed_once_per_threshold_and_a_new_sca_resets_them(aws, repo):
    _active(repo)

    assert repo.claim_expiry_notices(MARC, {14})
    assert not repo.claim_expiry_notices(MARC, {14})
    assert not repo.claim_expiry_notices(MARC, {14, 7})  # all or nothing
    assert repo.claim_expiry_notices(MARC, {7})
    repo.release_expiry_notices(MARC, {7})
    assert repo.claim_expiry_notices(MARC, {7})
    assert {int(n) for n in aws.raw_connection(*MARC)["expiry_notices"]["NS"]} == {14, 7}

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
    assert "expiry_notices" not in aws.raw_connection(*MARC)
    assert repo.claim_expiry_notices(MARC, {14})


def test_a_tampered_blob_is_reported_with_the_lease_held(aws, repo):
    _active(repo, expires_in=timedelta(minutes=5))
    other = _active(repo, ConnectionKey("user-eve", "13807"))
    blob = aws.raw_connection("user-eve", "13807")["tokens"]
    aws.dynamodb.update_item(
        TableName="aisp-connections-test",
        Key={"user_id": {"S": MARC.user_id}, "bank_code": {"S": MARC.bank_code}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "tokens"},
        ExpressionAttributeValues={":t": blob},
    )
    assert other.has_tokens

    leased = repo.acquire_lease(MARC, owner="r1", now=NOW, lease_seconds=60, due_before=2**40)

    assert leased.tokens is None and leased.tokens_unreadable
    assert aws.raw_connection(*MARC)["lease_owner"] == {"S": "r1"}
