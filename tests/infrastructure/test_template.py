"""template.yaml: the system it declares, its security properties, and that our template checks can fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.cfn_yaml import load_template
from tests.conftest import EVENTS_DIR, REPO_ROOT
from tests.infrastructure.conftest import SAM_PYTHON, needs_sam, translate

pytestmark = pytest.mark.infrastructure

FUNCTIONS = {
    "ConnectFunction": "functions/connect/",
    "OAuthCallbackFunction": "functions/oauth_callback/",
    "ConsentsFunction": "functions/consents/",
    "AccountsFunction": "functions/accounts/",
    "TokenRefresherFunction": "functions/token_refresher/",
    "AccountSyncFunction": "functions/account_sync/",
    "AuditShipperFunction": "functions/audit_shipper/",
}
# Every function but the audit shipper calls the banks, so reads the one bank-credentials secret.
BANK_CALLERS = set(FUNCTIONS) - {"AuditShipperFunction"}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(REPO_ROOT / "template.yaml")


def _resources(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_globals_runtime_tracing_layer_and_architecture(template):
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Layers"] == [{"Ref": "AispLayer"}]
    layer = template["Resources"]["AispLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "x86_64"}  # layers/aisp/Makefile
    assert function_globals["Architectures"] == ["x86_64"]
    assert layer["Properties"]["ContentUri"] == "layers/aisp/"


def test_every_function_exists_with_its_own_code_and_app_module(template):
    functions = _resources(template, "AWS::Serverless::Function")
    assert {name: f["Properties"]["CodeUri"] for name, f in functions.items()} == FUNCTIONS
    for code_uri in FUNCTIONS.values():
        assert (REPO_ROOT / code_uri / "app.py").is_file()


def test_jwt_authorizer_on_every_route_but_the_oauth_callback(template):
    api = template["Resources"]["HttpApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"
    jwt = api["Auth"]["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]
    # The app's audiences, and the backend's (BackendJwtAudience) when set: always one flat list of strings
    backend = {"Fn::Join": [",", [{"Fn::Join": [",", {"Ref": "JwtAudience"}]}, {"Ref": "BackendJwtAudience"}]]}
    assert jwt == {
        "issuer": {"Ref": "JwtIssuer"},
        "audience": {"Fn::If": ["HasBackendAudience", {"Fn::Split": [",", backend]}, {"Ref": "JwtAudience"}]},
    }

    unauthenticated = []
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi" and event["Properties"].get("Auth", {}).get("Authorizer") == "NONE":
                unauthenticated.append((name, event["Properties"]["Path"]))
    assert unauthenticated == [("OAuthCallbackFunction", "/oauth/callback")]


def test_refresher_is_scheduled_from_a_parameter(template):
    events = template["Resources"]["TokenRefresherFunction"]["Properties"]["Events"]
    assert events["Schedule"]["Type"] == "ScheduleV2"
    assert events["Schedule"]["Properties"]["ScheduleExpression"] == {"Ref": "RefreshScheduleRate"}
    assert template["Parameters"]["RefreshScheduleRate"]["Default"] == "rate(5 minutes)"


def test_refresher_fans_out_through_its_own_encrypted_queue_with_least_privilege(template):
    from aisp.dal import REFRESH_SHARDS

    resources = template["Resources"]
    queue = resources["RefreshFanoutQueue"]["Properties"]
    function = resources["TokenRefresherFunction"]["Properties"]
    # The queue: encrypted, a dead-letter queue, never redelivered while an invocation still works on a message
    assert queue["SqsManagedSseEnabled"] is True
    assert resources["RefreshFanoutDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RefreshFanoutDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    # The function consumes it one message at a time, at most one worker per shard
    mapping = _resources(template, "AWS::Lambda::EventSourceMapping")["TokenRefresherFanoutMapping"]
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["RefreshFanoutQueue", "Arn"]}
    assert mapping["Properties"]["FunctionName"] == {"Ref": "TokenRefresherFunction"}
    assert mapping["Properties"]["BatchSize"] == 1
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] == REFRESH_SHARDS
    # Its queue permissions name that queue only (no SAM SQS event: it would attach a policy on every queue)
    assert not [e for e in function["Events"].values() if e["Type"] == "SQS"]
    sqs = [
        s for s in _statements(resources["TokenRefresherFunction"]) if any(a.startswith("sqs:") for a in s["Action"])
    ]
    assert [s["Resource"] for s in sqs] == [{"Fn::GetAtt": ["RefreshFanoutQueue", "Arn"]}]
    variables = function["Environment"]["Variables"]
    assert variables["REFRESH_FANOUT_QUEUE_URL"]["Fn::If"][1] == {"Ref": "RefreshFanoutQueue"}
    assert variables["REFRESH_MARGIN_MINUTES"] == {"Ref": "RefreshMarginMinutes"}
    assert variables["EVENT_BUS_NAME"] == {"Ref": "EventBusName"}


def test_the_sync_fans_out_through_its_own_queue_as_the_refresher_and_reports_partial_batches(template):
    from aisp.models.sync import SYNC_SHARDS

    resources = template["Resources"]
    queue = resources["SyncFanoutQueue"]["Properties"]
    function = resources["AccountSyncFunction"]["Properties"]
    # The same encryption, retention and redrive as the refresher's queue; its own dead-letter queue
    refresher_queue = resources["RefreshFanoutQueue"]["Properties"]
    for setting in ("SqsManagedSseEnabled", "VisibilityTimeout", "MessageRetentionPeriod"):
        assert queue[setting] == refresher_queue[setting], setting
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["SyncFanoutDeadLetterQueue", "Arn"]},
        "maxReceiveCount": refresher_queue["RedrivePolicy"]["maxReceiveCount"],
    }
    assert (
        resources["SyncFanoutDeadLetterQueue"]["Properties"] == resources["RefreshFanoutDeadLetterQueue"]["Properties"]
    )
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    # The sync function consumes it, one message at a time, at most one worker per shard, with partial batch answers
    mapping = _resources(template, "AWS::Lambda::EventSourceMapping")["AccountSyncFanoutMapping"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["SyncFanoutQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "AccountSyncFunction"}
    assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (1, ["ReportBatchItemFailures"])
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == SYNC_SHARDS
    assert not [e for e in function["Events"].values() if e["Type"] == "SQS"]
    # Its queue permissions name its own queue only; the URL only where there is SQS (not the local stack)
    sqs = [s for s in _statements(resources["AccountSyncFunction"]) if any(a.startswith("sqs:") for a in s["Action"])]
    assert [s["Resource"] for s in sqs] == [{"Fn::GetAtt": ["SyncFanoutQueue", "Arn"]}]
    assert function["Environment"]["Variables"]["SYNC_FANOUT_QUEUE_URL"] == {
        "Fn::If": ["FansOut", {"Ref": "SyncFanoutQueue"}, {"Ref": "AWS::NoValue"}]
    }
    assert template["Conditions"]["FansOut"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BankEnvironment"}, "local"]}]}


def test_tables_have_pitr_and_ttl_and_refresh_index_is_sparse_gsi(template):
    tables = _resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == {"ConnectionsTable", "OAuthStatesTable", "IdempotencyTable", "QuotaTable", "SyncTable"}
    for table in tables.values():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["TimeToLiveSpecification"]["Enabled"] is True
        assert props["SSESpecification"] == {"SSEEnabled": True}
    connections = tables["ConnectionsTable"]["Properties"]
    assert [k["AttributeName"] for k in connections["KeySchema"]] == ["user_id", "bank_code"]
    (index,) = connections["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "RefreshDueIndex"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["refresh_shard", "refresh_due_at"]
    # The sync's due index: feed heads by shard and next sync time, with only who and which bank beside the keys
    (sync_index,) = tables["SyncTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert sync_index["IndexName"] == "SyncDueIndex"
    assert [k["AttributeName"] for k in sync_index["KeySchema"]] == ["sync_shard", "next_sync_at"]
    assert sync_index["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["user_id", "bank_code", "schedule_id"],
    }
    # The unattended-access ledger: bank#user, then day#method#account (aisp/dal/quota.py), TTL expires_at
    quota = tables["QuotaTable"]["Properties"]
    assert [k["AttributeName"] for k in quota["KeySchema"]] == ["pk", "sk"]
    assert quota["TimeToLiveSpecification"]["AttributeName"] == "expires_at"


def test_token_key_is_customer_managed_with_rotation_and_no_secret_is_created(template):
    key = template["Resources"]["TokenKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert not _resources(template, "AWS::SecretsManager::Secret")
    assert "Default" in template["Parameters"]["BankCredentialsSecretName"]


def _statements(function):
    for policy in function["Properties"]["Policies"]:
        yield from policy.get("Statement", [])


def test_policies_are_least_privilege(template):
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        policies = function["Properties"]["Policies"]
        # No wildcard resource and no wildcard action in our own statements
        for statement in _statements(function):
            assert statement["Resource"] != "*", name
            assert not any(action.endswith(":*") for action in statement["Action"]), name
        # The secret: read-only, on the one named secret, for the functions that call banks only
        secret = [
            p["AWSSecretsManagerGetSecretValuePolicy"] for p in policies if "AWSSecretsManagerGetSecretValuePolicy" in p
        ]
        assert len(secret) == (1 if name in BANK_CALLERS else 0), name
        if secret:
            assert "${BankCredentialsSecretName}-*" in secret[0]["SecretArn"]["Fn::Sub"]
        # No SAM policy template granting a whole service (e.g. DynamoDBCrudPolicy includes Scan)
        assert not any("CrudPolicy" in key for p in policies for key in p), name
    # Nobody scans the connections table; only the refresher, the sync and the live reads publish events (lifecycle,
    # sync), each on the one bus
    actions = {name: {a for s in _statements(f) for a in s["Action"]} for name, f in FUNCTIONS_OF(template).items()}
    assert not any("dynamodb:Scan" in a for a in actions.values())
    publishers = [
        n
        for n, f in FUNCTIONS_OF(template).items()
        if any("EventBridgePutEventsPolicy" in p for p in f["Properties"]["Policies"])
    ]
    assert sorted(publishers) == ["AccountSyncFunction", "AccountsFunction", "TokenRefresherFunction"]
    for name in publishers:
        (bus,) = [
            p["EventBridgePutEventsPolicy"]
            for p in FUNCTIONS_OF(template)[name]["Properties"]["Policies"]
            if "EventBridgePutEventsPolicy" in p
        ]
        assert bus == {"EventBusName": {"Ref": "EventBusName"}}, name
        assert (
            FUNCTIONS_OF(template)[name]["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"]
            == bus["EventBusName"]
        )
    assert "kms:GenerateDataKey" not in actions["ConnectFunction"]


def FUNCTIONS_OF(template):  # noqa: N802 - reads like the constant it complements
    return _resources(template, "AWS::Serverless::Function")


def test_outputs_expose_api_url_and_callback(template):
    assert {"ApiUrl", "OAuthCallbackUrl", "ConnectionsTableName", "TokenKeyArn"} <= set(template["Outputs"])


def test_event_files_are_http_api_v2_or_scheduler_payloads():
    files = sorted(EVENTS_DIR.glob("*/*.json"))
    assert files
    for path in files:
        event = json.loads(path.read_text(encoding="utf-8"))
        if path.parent.name == "token_refresher":
            # the schedule, or a message of the refresher's own fan-out queue
            assert event.get("source") == "aws.scheduler" or event["Records"][0]["eventSource"] == "aws:sqs"
        elif path.parent.name == "account_sync":
            assert event["source"] == "aws.scheduler"
        elif path.parent.name == "audit_shipper":
            assert event["awslogs"]["data"]  # a CloudWatch Logs subscription delivery
        else:
            assert event["version"] == "2.0"
            assert event["requestContext"]["http"]["sourceIp"]


def _translate_and_lint(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "template.yaml"
    source.write_text(text, encoding="utf-8")
    output = tmp_path / "translated.json"
    result = translate(source, output)
    if result.returncode != 0:
        return result
    lint = [str(SAM_PYTHON.parent / "cfn-lint"), str(output)]
    return subprocess.run(lint, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


@needs_sam
@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (("Runtime: python3.13", "Runtime: python3.99"), "E3030"),
        # a !Ref to something missing inside a SAM policy template
        (("EventBusName: !Ref EventBusName\n", "EventBusName: !Ref EventBusNam\n"), "EventBusNam"),
        (("Resource: !GetAtt OAuthStatesTable.Arn", "Resource: !GetAtt OAuthStateTable.Arn"), "OAuthStateTable"),
    ],
)
def test_translate_then_lint_catches_what_plain_cfn_lint_misses(tmp_path, mutation, expected):
    # Given the template with one mistake
    original = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    old, new = mutation
    assert old in original
    broken = original.replace(old, new, 1)

    # When it goes through the translate-then-lint step
    result = _translate_and_lint(tmp_path, broken)

    # Then the check fails and names the mistake
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


@needs_sam
def test_translate_then_lint_passes_on_the_real_template(tmp_path):
    result = _translate_and_lint(tmp_path, (REPO_ROOT / "template.yaml").read_text(encoding="utf-8"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_sys_path_comes_from_pytest_config():
    # pythonpath = ["layers/aisp", "."] in pyproject, never sys.path.append in tests
    assert str(REPO_ROOT / "layers" / "aisp") in sys.path


def test_every_checkov_skip_names_a_check_and_gives_a_reason(template):
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "make iac relies on explicit, reasoned skips"
    for name, skip in skips:
        assert skip["id"].startswith("CKV_"), name
        assert len(skip.get("comment", "")) > 40, f"{name}: {skip['id']} needs a reason"
    # The shared skips (written once, taken by alias) are each taken by more than one resource
    for shared in template["Metadata"]["CheckovSkips"]:
        takers = [name for name, skip in skips if skip == shared]
        assert len(takers) > 1, f"{shared['id']} is shared by {takers}: write it on its resource instead"


def test_alarms_watch_the_refresher_and_the_api_and_notify_the_optional_topic(template):
    resources = template["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    # The dead-letter queue of the fan-out, the refresher's crashes, its failure rate and the API's 5xx rate
    assert set(alarms) == {
        "RefreshFanoutDeadLetterAlarm",
        "SyncFanoutDeadLetterAlarm",
        "TokenRefresherErrorsAlarm",
        "TokenRefreshFailureRateAlarm",
        "HttpApi5xxAlarm",
        "AuditShipperDeadLetterAlarm",
    }
    assert alarms["RefreshFanoutDeadLetterAlarm"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["RefreshFanoutDeadLetterQueue", "QueueName"]}}
    ]
    assert alarms["SyncFanoutDeadLetterAlarm"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["SyncFanoutDeadLetterQueue", "QueueName"]}}
    ]
    assert alarms["TokenRefresherErrorsAlarm"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "TokenRefresherFunction"}}
    ]
    # The rate alarm reads the metrics the refresher publishes, in the namespace and service the functions use
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    published = {
        query["MetricStat"]["Metric"]["MetricName"]: query["MetricStat"]["Metric"]
        for query in alarms["TokenRefreshFailureRateAlarm"]["Metrics"]
        if "MetricStat" in query
    }
    assert set(published) == {"TokenRefreshFailed", "TokensRefreshed"}
    for metric in published.values():
        assert metric["Namespace"] == environment["POWERTOOLS_METRICS_NAMESPACE"]
        assert metric["Dimensions"] == [{"Name": "service", "Value": environment["POWERTOOLS_SERVICE_NAME"]}]
    source = (REPO_ROOT / "layers/aisp/aisp/logic/refresh/scheduler.py").read_text(encoding="utf-8")
    assert all(f'name="{name}"' in source for name in published)
    # Every alarm notifies AlarmTopicArn when one is given, and stays silent data-wise when nothing runs
    for name, properties in alarms.items():
        for key in ("AlarmActions", "OKActions"):
            assert properties[key] == {
                "Fn::If": ["NotifiesAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }, name
        assert properties["TreatMissingData"] == "notBreaching", name


def test_every_log_group_is_encrypted_with_our_key_and_expires(template):
    groups = _resources(template, "AWS::Logs::LogGroup")
    assert set(groups) == {"HttpApiAccessLogs", "FunctionsLogGroup", "AuditShipperLogGroup", "AuditLogGroup"}
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["AuditKey", "Arn"]}, name
        assert group["Properties"]["RetentionInDays"], name


def test_cors_is_off_by_default_and_follows_the_allowed_origins_parameter(template):
    # The parameter is empty by default, and the HttpApi's CORS exists only when it is not
    assert template["Parameters"]["AllowedOrigins"] == {
        "Type": "CommaDelimitedList",
        "Default": "",
        "Description": template["Parameters"]["AllowedOrigins"]["Description"],
    }
    assert template["Conditions"]["HasAllowedOrigins"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "AllowedOrigins"}]}, ""]}]
    }
    condition, cors, otherwise = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]["Fn::If"]
    assert (condition, otherwise) == ("HasAllowedOrigins", {"Ref": "AWS::NoValue"})
    assert cors["AllowOrigins"] == {"Ref": "AllowedOrigins"}
    # Exactly the headers a browser frontend sends, and no cookies: the token travels in Authorization
    assert cors["AllowHeaders"] == ["authorization", "content-type", "idempotency-key"]
    assert cors["AllowCredentials"] is False


def test_the_translated_api_carries_the_cors_configuration_under_its_condition(translated_template):
    body = translated_template["Resources"]["HttpApi"]["Properties"]["Body"]
    condition, cors, otherwise = body["x-amazon-apigateway-cors"]["Fn::If"]
    assert (condition, otherwise) == ("HasAllowedOrigins", {"Ref": "AWS::NoValue"})
    assert cors["allowMethods"] == ["GET", "POST", "PUT", "DELETE"]
    assert cors["maxAge"] == 600


def test_the_audit_trail_is_shipped_from_the_functions_logs_to_its_own_kept_group(template):
    from aisp.audit import MARKER, MARKER_VERSION

    resources = template["Resources"]
    # Every function logs to our own group, the shipper to a group of its own (its lines never loop back)
    assert template["Globals"]["Function"]["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionsLogGroup"}
    shipper = resources["AuditShipperFunction"]["Properties"]
    assert shipper["LoggingConfig"]["LogGroup"] == {"Ref": "AuditShipperLogGroup"}
    # The subscription sends the marked audit lines of that group to the shipper, which may be invoked by it only
    subscription = resources["AuditSubscription"]["Properties"]
    assert subscription["LogGroupName"] == {"Ref": "FunctionsLogGroup"}
    assert subscription["FilterPattern"] == f"{{ $.{MARKER} = {MARKER_VERSION} }}"
    assert subscription["DestinationArn"] == {"Fn::GetAtt": ["AuditShipperFunction", "Arn"]}
    permission = resources["AuditShipperInvokePermission"]["Properties"]
    assert permission["SourceArn"] == {"Fn::GetAtt": ["FunctionsLogGroup", "Arn"]}
    # The shipper writes to the audit group and nothing else; a delivery it fails goes to its (alarmed) DLQ
    (statement,) = [s for p in shipper["Policies"] for s in p.get("Statement", [])]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"] == {"Fn::GetAtt": ["AuditLogGroup", "Arn"]}
    assert shipper["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": ["AuditShipperDeadLetterQueue", "Arn"]}
    # The audit group: kept for the parameter's days, encrypted with its own key, kept when the stack goes
    audit_group = resources["AuditLogGroup"]
    assert audit_group["Properties"]["RetentionInDays"] == {"Ref": "AuditRetentionDays"}
    assert audit_group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["AuditKey", "Arn"]}
    assert audit_group["DeletionPolicy"] == audit_group["UpdateReplacePolicy"] == "Retain"
    assert template["Parameters"]["AuditRetentionDays"]["Default"] == 1827  # noqa: PLR2004 - five years


def test_the_sync_events_reach_the_fintechs_webhook_through_eventbridge_only_when_configured(template):
    resources = template["Resources"]
    webhook = {name: r for name, r in resources.items() if name.startswith("Webhook")}

    # Nothing exists without an endpoint
    assert set(webhook) == {
        "WebhookConnection",
        "WebhookDestination",
        "WebhookRule",
        "WebhookRole",
        "WebhookDeadLetterQueue",
        "WebhookDeadLetterQueuePolicy",
    }
    assert {r.get("Condition") for r in webhook.values()} == {"HasWebhook"}
    assert template["Parameters"]["WebhookEndpoint"]["Default"] == ""
    # The sync's two events from our source, retried a day, then kept in an encrypted dead-letter queue
    rule = webhook["WebhookRule"]["Properties"]
    assert rule["EventPattern"] == {"source": ["aisp.gateway"], "detail-type": ["TransactionsUpdated", "SyncFailed"]}
    (target,) = rule["Targets"]
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 86400
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}}
    assert webhook["WebhookDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    # The key comes from a secret the fintech created, never from a parameter or the template
    key = webhook["WebhookConnection"]["Properties"]["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"]
    assert key == {"Fn::Sub": "{{resolve:secretsmanager:${WebhookSecretName}:SecretString:api_key}}"}
    # The role may invoke that destination and nothing else
    (policy,) = webhook["WebhookRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == (
        "events:InvokeApiDestination",
        {"Fn::GetAtt": ["WebhookDestination", "Arn"]},
    )
