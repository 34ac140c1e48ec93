"""What only the DynamoDB repositories have: the items at rest (sealed blobs, hashed states, TTL numbers), the keys-only
refresh index, the shard function, and AWS failures translated. Behaviour common to both implementations is in the
contract tests beside this file."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.dal import REFRESH_SHARDS, DynamoConnectionRepository, DynamoOAuthStateRepository, hash_state, refresh_shard
from aisp.dal.tables import ConnectionRecord
from aisp.errors import PersistenceError
from aisp.models.connection import TokenPair
from tests.conftest import CONNECTIONS_TABLE, STATES_TABLE
from tests.contract.support import MARC, NOW, STATE, active, authorize, create_state, raw_text
from tests.fakes import START

pytestmark = pytest.mark.dynamodb


@pytest.fixture
def repo(aws):
    return DynamoConnectionRepository(cipher=wiring.token_cipher)


@pytest.fixture
def states(aws):
    return DynamoOAuthStateRepository()


def test_tokens_are_sealed_at_rest(aws, repo):
    active(repo, via_pending=True)
    authorize(
        repo,
        expected_version=repo.find("user-marc", "13807").version,
        tokens=TokenPair(access_token=SecretStr("access-pending-5555"), refresh_token=SecretStr("refresh-pending-6")),
    )

    item = aws.raw_connection("user-marc", "13807")
    text = raw_text(item)
    assert "access-aaaa-1111" not in text and "refresh-rrrr-2222" not in text
    assert "access-pending-5555" not in text and "refresh-pending-6" not in text
    assert set(item["tokens"]) == {"B"} and set(item["pending_tokens"]) == {"B"}
    assert "purge_at" not in item


def test_the_refresh_index_projects_keys_only_and_is_sparse(aws, repo):
    # Given one ACTIVE connection with a refresh token, one without, one PENDING
    active(repo, MARC._replace(user_id="user-a"), via_pending=True)
    active(
        repo,
        MARC._replace(user_id="user-b"),
        tokens=TokenPair(access_token=SecretStr("only-access")),
    )
    repo.create_pending(user_id="user-c", bank_code="13807", connection_id="cn_c", now=NOW)

    # When the refresher's index is read, shard by shard
    due = [
        (record.user_id, record.bank_code)
        for shard in range(REFRESH_SHARDS)
        for record in ConnectionRecord.refresh_due_index.query(shard)
    ]

    # Then only the refreshable connection is there, by its keys
    assert due == [("user-a", "13807")]
    (projected,) = aws.dynamodb.query(
        TableName=CONNECTIONS_TABLE,
        IndexName="RefreshDueIndex",
        KeyConditionExpression="refresh_shard = :s",
        ExpressionAttributeValues={":s": {"N": str(refresh_shard("user-a", "13807"))}},
    )["Items"]
    assert set(projected) == {"user_id", "bank_code", "refresh_shard", "refresh_due_at"}


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


def test_only_the_hash_of_the_state_is_stored(aws, states):
    create_state(states)

    items = aws.dynamodb.scan(TableName=STATES_TABLE)["Items"]
    assert [item["state_hash"]["S"] for item in items] == [hash_state(STATE)]
    assert STATE not in str(items)
    assert items[0]["expires_at"] == {"N": str(int((START + timedelta(minutes=10)).timestamp()))}


def test_a_completion_value_is_stored_hashed_beside_the_states_and_purged_a_day_after_its_deadline(aws, repo):
    authorized = authorize(repo, completion_hash="c0ffee")

    (item,) = aws.dynamodb.scan(TableName=STATES_TABLE)["Items"]
    assert item["state_hash"] == {"S": "completion:c0ffee"}
    deadline = authorized.pending.expires_at
    assert item["expires_at"] == {"N": str(int((deadline + timedelta(days=1)).timestamp()))}
