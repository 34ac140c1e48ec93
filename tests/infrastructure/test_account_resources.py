"""template.yaml for consents and account queries: the cursor key, who may use it, and the idempotency table as
Powertools expects it."""

from __future__ import annotations

import pytest

from scripts.cfn_yaml import load_template
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.infrastructure


@pytest.fixture(scope="module")
def resources() -> dict:
    return load_template(REPO_ROOT / "template.yaml")["Resources"]


def _actions(function: dict) -> dict[str, list]:
    found: dict[str, list] = {}
    for policy in function["Properties"]["Policies"]:
        for statement in policy.get("Statement", []):
            for action in statement["Action"]:
                found.setdefault(action, []).append(statement["Resource"])
    return found


def test_the_cursor_key_is_an_hmac_key(resources):
    key = resources["CursorKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("HMAC_256", "GENERATE_VERIFY_MAC")
    assert resources["CursorKeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": "CursorKey"}


def test_only_the_accounts_function_derives_the_cursor_key(resources):
    functions = {name: r for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    macs = {
        name: _actions(f).get("kms:GenerateMac") for name, f in functions.items() if "kms:GenerateMac" in _actions(f)
    }

    assert macs == {"AccountsFunction": [{"Fn::GetAtt": ["CursorKey", "Arn"]}]}
    variables = functions["AccountsFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CURSOR_KEY_ID"] == {"Fn::GetAtt": ["CursorKey", "Arn"]}


@pytest.mark.parametrize("function", ["ConsentsFunction", "ConnectFunction"])
def test_the_keyed_writes_have_the_idempotency_table_as_powertools_expects_it(resources, function):
    keyed = resources[function]["Properties"]
    assert keyed["Environment"]["Variables"]["IDEMPOTENCY_TABLE_NAME"] == {"Ref": "IdempotencyTable"}
    table = resources["IdempotencyTable"]["Properties"]
    # DynamoDBPersistenceLayer defaults: key attribute "id", expiry attribute "expiration"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    idempotency = _actions(resources[function])
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert {"Fn::GetAtt": ["IdempotencyTable", "Arn"]} in idempotency[action]


def test_the_accounts_function_answers_within_the_http_api_timeout(resources):
    assert resources["AccountsFunction"]["Properties"]["Timeout"] < 30  # HTTP API integration timeout
