"""DynamoConnectionRepository under moto: conditional writes, the sparse refresh index, encrypted tokens."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.dal import REFRESH_SHARDS, DynamoConnectionRepository, refresh_shard
from aisp.dal.tables import ConnectionRecord
from aisp.errors import ConflictError, ConnectionNotFoundError, PersistenceError, TokenIntegrityError
from aisp.models.connection import ConnectionStatus, TokenPair
from tests.conftest import CONNECTIONS_TABLE
from tests.fakes import START

NOW = START
PAIR = TokenPair(access_token=SecretStr("access-aaaa-1111"), refresh_token=SecretStr("refresh-rrrr-2222"))


def _raw_text(item: dict) -> str:
    """Every attribute value of a raw item, decoded, in one string (bytes decoded as latin-1 and utf-8)."""
    parts = []
    for value in item.values():
        for raw in value.values():
            if isinstance(raw, bytes):
                parts += [raw.decode("latin-1"), raw.decode("utf-8", "replace")]
            else:
                parts.append(str(raw))
    return "\n".join(parts)


@pytest.fixture
def repo(aws):
    return DynamoConnectionRepository(cipher=wiring.token_cipher)


def _active(repo, user_id="user-marc", bank_code="13807", tokens=PAIR):
    pending = repo.create_pending(user_id=user_id, bank_code=bank_code, connection_id=f"cn_{user_id}", now=NOW)
    return repo.activate(
        user_id=user_id,
        bank_code=bank_code,
        connection_id=pending.connection_id,
        expected_version=pending.version,
        tokens=tokens,
        access_expires_at=NOW + timedelta(hours=1),
        reauth_due_at=NOW + timedelta(days=90),
        now=NOW,
    )


def test_activate_stores_encrypted_tokens_and_enters_the_refresh_index(aws, repo):
    # Given a PENDING connection
    pending = repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_1", now=NOW)
    assert pending.status is ConnectionStatus.PENDING and pending.version == 1 and not pending.has_tokens

    # When the tokens of a strong authentication are stored
    active = _active_after(repo, pending)

    # Then the record is ACTIVE, versioned, and its tokens decrypt through the repository only
    assert active.status is ConnectionStatus.ACTIVE
    assert active.version == 2
    assert active.access_expires_at == NOW + timedelta(hours=1)
    assert active.refresh_issued_at == NOW and active.connected_at == NOW
    connection, tokens = repo.get_with_tokens("user-marc", "13807")
    assert connection == active
    assert tokens.access_token.get_secret_value() == "access-aaaa-1111"
    assert tokens.refresh_token.get_secret_value() == "refresh-rrrr-2222"
    item = aws.raw_connection("user-marc", "13807")
    text = _raw_text(item)
    assert "access-aaaa-1111" not in text and "refresh-rrrr-2222" not in text
    assert set(item["tokens"]) == {"B"}
    assert item["refresh_shard"] == {"N": str(refresh_shard("user-marc", "13807"))}
    assert item["refresh_due_at"] == {"N": str(int((NOW + timedelta(hours=1)).timestamp()))}
    assert "purge_at" not in item


def _active_after(repo, pending):
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


def test_the_refresh_index_is_sparse(aws, repo):
    # Given one ACTIVE connection with a refresh token, one without, one PENDING
    _active(repo, "user-a")
    _active(repo, "user-b", tokens=TokenPair(access_token=SecretStr("only-access")))
    repo.create_pending(user_id="user-c", bank_code="13807", connection_id="cn_c", now=NOW)

    # When the refresher's index is read, shard by shard
    due = [
        (record.user_id, record.bank_code)
        for shard in range(REFRESH_SHARDS)
        for record in ConnectionRecord.refresh_due_index.query(shard)
    ]

    # Then only the refreshable connection is there
    assert due == [("user-a", "13807")]


def test_a_stale_version_write_fails_and_keeps_the_previous_refresh_token(repo):
    # Given an ACTIVE connection read by two writers
    seen_by_first = _active(repo)
    seen_by_second = repo.find("user-marc", "13807")

    # When the first stores refreshed tokens, then the second writes with the version it read
    repo.store_refreshed_tokens(
        seen_by_first,
        tokens=TokenPair(access_token=SecretStr("access-new-1"), refresh_token=PAIR.refresh_token),
        access_expires_at=NOW + timedelta(hours=2),
        now=NOW,
    )
    with pytest.raises(ConflictError):
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


def test_create_and_activate_refuse_to_overwrite(repo):
    _active(repo)

    with pytest.raises(ConflictError):
        repo.create_pending(user_id="user-marc", bank_code="13807", connection_id="cn_other", now=NOW)
    with pytest.raises(ConflictError):  # "there was no item" is a stale belief too
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


def test_refreshed_tokens_are_refused_once_the_connection_is_not_active(repo):
    active = _active(repo)
    revoked = repo.revoke(active, now=NOW, purge_at=NOW + timedelta(days=30))

    with pytest.raises(ConflictError):
        repo.store_refreshed_tokens(revoked, tokens=PAIR, access_expires_at=NOW, now=NOW)


def test_reauth_required_leaves_the_index_and_forgets_the_tokens(aws, repo):
    active = _active(repo)

    marked = repo.mark_reauth_required(active, now=NOW)

    assert marked.status is ConnectionStatus.REAUTH_REQUIRED and not marked.has_tokens
    item = aws.raw_connection("user-marc", "13807")
    assert not {"tokens", "refresh_shard", "refresh_due_at"} & set(item)


def test_revoke_forgets_tokens_and_consent_and_sets_the_purge_ttl(aws, repo):
    active = _active(repo)

    revoked = repo.revoke(active, now=NOW, purge_at=NOW + timedelta(days=30))

    assert revoked.status is ConnectionStatus.REVOKED
    assert revoked.revoked_at == NOW and not revoked.has_tokens
    assert repo.get_with_tokens("user-marc", "13807") == (revoked, None)
    item = aws.raw_connection("user-marc", "13807")
    assert not {"tokens", "consent", "refresh_shard", "refresh_due_at", "access_expires_at"} & set(item)
    assert item["purge_at"] == {"N": str(int((NOW + timedelta(days=30)).timestamp()))}
    # And a reconnection brings it back to PENDING, no longer purged, same id
    reopened = repo.reopen(revoked, now=NOW)
    assert reopened.status is ConnectionStatus.PENDING and reopened.connection_id == active.connection_id
    assert "purge_at" not in aws.raw_connection("user-marc", "13807")


def test_a_token_blob_copied_into_another_record_does_not_decrypt(aws, repo):
    # Given Marc's and Eve's connections, and Eve copying Marc's blob into her own record
    _active(repo, "user-marc")
    _active(repo, "user-eve", tokens=TokenPair(access_token=SecretStr("eve-access")))
    blob = aws.raw_connection("user-marc", "13807")["tokens"]
    aws.dynamodb.update_item(
        TableName=CONNECTIONS_TABLE,
        Key={"user_id": {"S": "user-eve"}, "bank_code": {"S": "13807"}},
        UpdateExpression="SET tokens = :t",
        ExpressionAttributeValues={":t": blob},
    )

    # Then reading Eve's tokens fails instead of handing out Marc's
    with pytest.raises(TokenIntegrityError):
        repo.get_with_tokens("user-eve", "13807")
    assert repo.get_with_tokens("user-marc", "13807")[1].access_token.get_secret_value() == "access-aaaa-1111"


def test_listing_is_per_user(repo):
    _active(repo, "user-marc", "13807")
    repo.create_pending(user_id="user-marc", bank_code="17515", connection_id="cn_2", now=NOW)
    _active(repo, "user-eve", "13807")

    assert [(c.user_id, c.bank_code) for c in repo.list_for_user("user-marc")] == [
        ("user-marc", "13807"),
        ("user-marc", "17515"),
    ]
    assert repo.list_for_user("user-nobody") == []
    with pytest.raises(ConnectionNotFoundError):
        repo.get_with_tokens("user-eve", "17515")


def test_refresh_shards_are_stable_and_spread():
    counts = Counter(refresh_shard(f"user-{i}", "13807") for i in range(1600))

    assert refresh_shard("user-marc", "13807") == refresh_shard("user-marc", "13807")
    assert set(counts) == set(range(REFRESH_SHARDS))
    assert max(counts.values()) < 2 * min(counts.values())


def test_store_failures_are_persistence_errors(aws, repo):
    # Given a table that is gone
    aws.dynamodb.delete_table(TableName=CONNECTIONS_TABLE)

    with pytest.raises(PersistenceError) as caught:
        repo.find("user-marc", "13807")
    assert caught.value.details["aws_error_code"] == "ResourceNotFoundException"
    assert caught.value.__cause__ is not None
