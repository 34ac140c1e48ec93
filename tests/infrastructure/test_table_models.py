"""The PynamoDB models describe the tables template.yaml creates: keys, attribute types, the sparse GSI, TTL."""

from __future__ import annotations

import pytest

from aisp.dal.tables import REFRESH_DUE_INDEX, SYNC_DUE_INDEX, ConnectionRecord, OAuthStateRecord, SyncRecord
from scripts.cfn_yaml import load_template
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.infrastructure


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(REPO_ROOT / "template.yaml")


def _types(definitions):
    return {d["AttributeName"]: d["AttributeType"] for d in definitions}


def _keys(schema):
    return sorted((k["AttributeName"], k["KeyType"]) for k in schema)


@pytest.mark.parametrize(
    ("model", "resource"),
    [(ConnectionRecord, "ConnectionsTable"), (OAuthStateRecord, "OAuthStatesTable"), (SyncRecord, "SyncTable")],
)
def test_model_keys_and_indexes_match_the_template(template, model, resource):
    # Given the table as declared and the model's schema (the one create_table would send)
    declared = template["Resources"][resource]["Properties"]
    schema = model._get_schema()

    # Then keys and key attribute types agree
    assert _keys(schema["key_schema"]) == _keys(declared["KeySchema"])
    assert _types(schema["attribute_definitions"]) == _types(declared["AttributeDefinitions"])
    # And so do the global secondary indexes (name, keys, projection)
    model_indexes = {
        index["index_name"]: (
            _keys(index["key_schema"]),
            index["projection"]["ProjectionType"],
            sorted(index["projection"].get("NonKeyAttributes", [])),
        )
        for index in schema.get("global_secondary_indexes", [])
    }
    declared_indexes = {
        index["IndexName"]: (
            _keys(index["KeySchema"]),
            index["Projection"]["ProjectionType"],
            sorted(index["Projection"].get("NonKeyAttributes", [])),
        )
        for index in declared.get("GlobalSecondaryIndexes", [])
    }
    assert model_indexes == declared_indexes


def test_the_ttl_attributes_are_the_models_ttl_attributes(template):
    from pynamodb.attributes import TTLAttribute

    for model, resource in ((ConnectionRecord, "ConnectionsTable"), (OAuthStateRecord, "OAuthStatesTable")):
        ttl = [name for name, attr in model.get_attributes().items() if isinstance(attr, TTLAttribute)]
        declared = template["Resources"][resource]["Properties"]["TimeToLiveSpecification"]
        assert ttl == [declared["AttributeName"]]
    assert REFRESH_DUE_INDEX == "RefreshDueIndex"
    assert SYNC_DUE_INDEX == "SyncDueIndex"


def test_the_refresh_index_keys_are_optional_on_the_model():
    # Sparse index: the item carries refresh_shard/refresh_due_at only while refreshable
    attributes = ConnectionRecord.get_attributes()
    assert attributes["refresh_shard"].null and attributes["refresh_due_at"].null


def test_the_sync_index_keys_are_optional_on_the_model():
    # Sparse index: only a scheduled feed head carries sync_shard/next_sync_at (a transaction or a change never)
    attributes = SyncRecord.get_attributes()
    assert attributes["sync_shard"].null and attributes["next_sync_at"].null


def test_every_kms_statement_requires_the_cipher_encryption_context(template):
    from aisp.aws.kms import KMS_ENCRYPTION_CONTEXT

    expected = {f"kms:EncryptionContext:{key}": value for key, value in KMS_ENCRYPTION_CONTEXT.items()}
    kms_statements = [
        (name, statement)
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for policy in resource["Properties"]["Policies"]
        for statement in policy.get("Statement", [])
        if any(action.startswith("kms:") for action in statement["Action"])
        # The token key's statements; the cursor key takes no context (GenerateMac), see test_account_resources.py
        and statement["Resource"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    ]
    assert len(kms_statements) == 6  # the five token users and AccountSyncFunction
    for name, statement in kms_statements:
        # Each key of the context the cipher sends is pinned (a subset is enough for KMS to enforce it)
        required = statement["Condition"]["StringEquals"]
        assert required.items() <= expected.items(), name
        assert required, name
