"""The whole local stack on free ports: moto with the template's resources, the sandbox, the real template's API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
import requests

from local.aws import FAKE_CREDENTIALS
from local.stack import DEFAULT_TEMPLATE, start_stack
from local.template import REGION, LocalTemplate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10
REGISTRY = Path(__file__).resolve().parents[2] / "layers" / "aisp" / "aisp" / "banks" / "banks.json"


@pytest.fixture(scope="module")
def stack(state_dir):
    with start_stack(api_port=0, moto_port=0, sandbox_port=0, sandbox_screens_port=0, state_dir=state_dir) as running:
        yield running


@pytest.fixture(scope="module")
def template():
    return LocalTemplate.load(DEFAULT_TEMPLATE)


def _aws(stack, service):
    return boto3.client(service, endpoint_url=stack.moto_url, region_name=REGION, **FAKE_CREDENTIALS)


def _token(stack, user="marc"):
    response = requests.get(f"{stack.api_url}/_local/token", params={"user": user}, timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()["access_token"]


def test_list_banks_answers_the_registry_over_http(stack):
    # Given a token from the stack's local issuer
    token = _token(stack)

    # When GET /v1/banks is called like a fintech app would
    response = requests.get(f"{stack.api_url}/v1/banks", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)

    # Then the connect function answers with the registry
    assert response.status_code == 200
    registry = json.loads(REGISTRY.read_text(encoding="utf-8"))["banks"]
    assert [(b["bank_code"], b["short_name"]) for b in response.json()["banks"]] == [
        (b["bank_code"], b["short_name"]) for b in registry
    ]


def test_list_banks_without_token_is_401(stack):
    response = requests.get(f"{stack.api_url}/v1/banks", timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_routes_are_the_templates_http_api_events(stack, template):
    # Given the HttpApi events declared in template.yaml
    declared = {
        (name, f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}")
        for name, properties in template.resources_of_type("AWS::Serverless::Function")
        for event in (properties.get("Events") or {}).values()
        if event["Type"] == "HttpApi"
    }

    # Then the stack serves exactly those, and only the OAuth callback skips the JWT authorizer
    assert {(route.function, route.route_key) for route in stack.app.routes} == declared
    assert {route.route_key for route in stack.app.routes if route.authorizer is None} == {"GET /oauth/callback"}


def test_tables_are_created_from_the_template(stack, template):
    # Given the DynamoDB tables of template.yaml
    dynamodb = _aws(stack, "dynamodb")
    for logical_id, properties in template.resources_of_type("AWS::DynamoDB::Table"):
        # When moto describes the local table
        name = stack.resources[logical_id].ref
        table = dynamodb.describe_table(TableName=name)["Table"]

        # Then its keys, attributes, indexes and TTL are the template's
        assert table["KeySchema"] == properties["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(properties["AttributeDefinitions"], key=str)
        assert [(i["IndexName"], i["KeySchema"], i["Projection"]) for i in table.get("GlobalSecondaryIndexes", [])] == [
            (i["IndexName"], i["KeySchema"], i["Projection"]) for i in properties.get("GlobalSecondaryIndexes", [])
        ]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == properties["TimeToLiveSpecification"]["AttributeName"]
        assert ttl["TimeToLiveStatus"] == "ENABLED"

    # And the connections table has the local name (sam-env.json passes it to sam local), with the refresher's index
    connections = dynamodb.describe_table(TableName="aisp-connections")["Table"]
    assert [index["IndexName"] for index in connections["GlobalSecondaryIndexes"]] == ["RefreshDueIndex"]
    assert stack.environment["CONNECTIONS_TABLE_NAME"] == "aisp-connections"


def test_kms_key_and_alias_exist(stack):
    # Given the functions' TOKEN_KEY_ID (the template's !GetAtt TokenKey.Arn)
    kms = _aws(stack, "kms")
    key_arn = stack.environment["TOKEN_KEY_ID"]

    # Then the key exists, with the local alias
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["Arn"] == key_arn
    alias = kms.describe_key(KeyId="alias/aisp-gateway-local-tokens")["KeyMetadata"]
    assert alias["Arn"] == key_arn


def test_secret_holds_the_sandbox_tpp_credentials(stack):
    # When the bank-credentials secret is read back
    secrets = _aws(stack, "secretsmanager")
    name = stack.environment["BANK_CREDENTIALS_SECRET_NAME"]
    stored = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])

    # Then it is the sandbox's generated credentials JSON, with every field the gateway needs
    assert stored == json.loads(stack.sandbox.credentials_path.read_text(encoding="utf-8"))
    assert set(stored) >= {"client_id", "qwac_cert_pem", "qwac_key_pem", "qseal_key_pem", "qseal_key_id"}


def test_functions_point_at_the_local_services(stack):
    environment = stack.environment

    assert environment["BANK_ENVIRONMENT"] == "local"
    assert environment["BANK_BASE_URL_TEMPLATE"] == stack.sandbox.api_origin + "/{bank_code}"
    assert environment["BANK_AUTHORIZE_URL_TEMPLATE"] == stack.sandbox.screens_origin + "/{bank_code}"
    assert environment["BANK_CA_BUNDLE"] == str(stack.sandbox.ca_path)
    assert environment["OAUTH_CALLBACK_URL"] == f"{stack.api_url}/oauth/callback"
    assert environment["RETURN_URL_ALLOWLIST"].split(",")[0] == f"{stack.api_url}/"
    assert environment["AWS_ENDPOINT_URL"] == stack.moto_url
    assert os.environ["AWS_ENDPOINT_URL"] == stack.moto_url
    # The sandbox accepts the local callback as redirect URI
    assert stack.sandbox.core.tpp.redirect_uris == (f"{stack.api_url}/oauth/callback",)


def test_the_accounts_function_counts_unattended_reads_in_the_local_quota_table(stack):
    # Given the template's QuotaTable, created in moto like every table
    table = stack.resources["QuotaTable"].ref
    assert _aws(stack, "dynamodb").describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"

    # Then the accounts function (the unattended reads) has it, with the scopes the local issuer signs
    accounts = stack.app.functions["AccountsFunction"].environment
    assert accounts["QUOTA_TABLE_NAME"] == table
    issuer = stack.api.issuer
    assert issuer.server_scopes == (accounts["UNATTENDED_SCOPE"], accounts["ATTENDED_PROXY_SCOPE"])
    assert accounts["TRUST_FORWARDED_PSU_IP"] == "false"


def test_a_server_token_reads_the_quota_for_the_user_it_names(stack):
    # Given a server token of the fintech's backend (the unattended scope, sub = the client)
    response = requests.get(
        f"{stack.api_url}/_local/token", params={"client": "backend", "scope": "aisp/unattended"}, timeout=TIMEOUT
    )
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    # When it asks for a user's quota at a bank, naming the user in Aisp-User
    answer = requests.get(
        f"{stack.api_url}/v1/connections/13807/quota", headers={**headers, "Aisp-User": "marc"}, timeout=TIMEOUT
    )

    # Then the template's route answers through the real authorizer: nothing used today, all 4 left
    assert answer.status_code == 200, answer.text
    assert (answer.json()["limit"], answer.json()["usage"]) == (4, [])
    # And without Aisp-User the same token is refused, naming the header (the client is never a user)
    refused = requests.get(f"{stack.api_url}/v1/connections/13807/quota", headers=headers, timeout=TIMEOUT)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"field": "Aisp-User", "message": "a server token must name the user it acts for in Aisp-User"}
    ]


def test_boto3_and_pynamodb_honour_aws_endpoint_url(stack):
    # Given only the environment the functions get (no endpoint passed in code)
    from pynamodb.attributes import UnicodeAttribute
    from pynamodb.models import Model

    class Connection(Model):
        class Meta:
            table_name = "aisp-connections"

        user_id = UnicodeAttribute(hash_key=True)
        bank_code = UnicodeAttribute(range_key=True)

    # When boto3 and PynamoDB build their clients
    client = boto3.client("dynamodb")
    Connection(user_id="spike", bank_code="13807").save()

    # Then both went to moto through AWS_ENDPOINT_URL
    assert client.meta.endpoint_url == stack.moto_url
    assert Connection._get_connection().connection.client.meta.endpoint_url == stack.moto_url
    item = client.get_item(TableName="aisp-connections", Key={"user_id": {"S": "spike"}, "bank_code": {"S": "13807"}})
    assert item["Item"]["user_id"] == {"S": "spike"}
    client.delete_item(TableName="aisp-connections", Key={"user_id": {"S": "spike"}, "bank_code": {"S": "13807"}})


def test_quickstart_page_is_served(stack):
    # When the browser opens the API's root
    page = requests.get(f"{stack.api_url}/", timeout=TIMEOUT)
    script = requests.get(f"{stack.api_url}/_local/static/app.js", timeout=TIMEOUT)
    style = requests.get(f"{stack.api_url}/_local/static/style.css", timeout=TIMEOUT)

    # Then the page and its assets load (no build step)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/_local/static/app.js" defer></script>' in page.text
    assert script.status_code == 200
    assert "/v1/banks" in script.text
    assert style.status_code == 200
    assert requests.get(f"{stack.api_url}/_local/static/../stack.py", timeout=TIMEOUT).status_code == 404


def test_refresher_runs_on_demand(stack):
    # Given the template's schedule (rate(5 minutes)) and no timer running in tests
    timer = stack.schedule_timer("TokenRefresherFunction")
    assert timer.interval == 300
    assert not timer.is_running

    # When the refresher is ticked with events/token_refresher/scheduled.json
    result = stack.tick("TokenRefresherFunction")

    # Then the handler ran (its result is JSON, as Lambda returns it)
    assert json.loads(json.dumps(result)) == result
