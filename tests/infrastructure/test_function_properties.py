"""What each function runs with once SAM has merged Globals.Function into its own properties, and what its role grants.

template.yaml keeps what every function shares in Globals and on a function only what differs; these assertions read
the translator's output (what CloudFormation deploys), so moving a property between the two cannot change them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

pytestmark = pytest.mark.infrastructure

HTTP_MEMORY = {"Ref": "HttpFunctionMemorySize"}
SHARED = {
    "Runtime": "python3.13",
    "Architectures": ["x86_64"],
    "Handler": "app.lambda_handler",
    "TracingConfig": {"Mode": "Active"},
}
SHARED_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "aisp-gateway",
    "POWERTOOLS_METRICS_NAMESPACE": "AispGateway",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    "STAGE": {"Ref": "Stage"},
    "CONNECTIONS_TABLE_NAME": {"Ref": "ConnectionsTable"},
    "TOKEN_KEY_ID": {"Fn::GetAtt": ["TokenKey", "Arn"]},
    "BANK_ENVIRONMENT": {"Ref": "BankEnvironment"},
    "BANK_BASE_URL_TEMPLATE": {"Ref": "BankBaseUrlTemplate"},
    "BANK_AUTHORIZE_URL_TEMPLATE": {"Ref": "BankAuthorizeUrlTemplate"},
    "BANK_CA_BUNDLE": {"Ref": "BankCaBundle"},
    "BANK_CREDENTIALS_SECRET_NAME": {"Ref": "BankCredentialsSecretName"},
    "AWS_ENDPOINT_URL": {"Fn::If": ["UsesLocalAwsEndpoint", {"Ref": "LocalAwsEndpointUrl"}, {"Ref": "AWS::NoValue"}]},
    "REAUTH_DAYS": {"Ref": "ReauthDays"},
    "UNATTENDED_SCOPE": {"Ref": "UnattendedScope"},
    "ATTENDED_PROXY_SCOPE": {"Ref": "AttendedProxyScope"},
    "TRUST_FORWARDED_PSU_IP": {"Ref": "TrustForwardedPsuIp"},
}
# SAM's own grants: CloudWatch Logs (basic execution role) and X-Ray (Tracing: Active).
MANAGED_POLICIES = [
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
]
BANK_SECRET = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${BankCredentialsSecretName}-*"
)
TOKENS = {"StringEquals": {"kms:EncryptionContext:aisp:purpose": "bank-tokens"}}
TABLE_CRUD = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
# SAM's EventBridgePutEventsPolicy on the fintech's bus (the refresher's lifecycle events, the sync's and live reads').
PUT_EVENTS = (
    None,
    "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}",
    ("events:PutEvents",),
)
FORGET_SYNCED = ("dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:Query")
# A scheduled function's own fan-out queue: send (its scheduled runs) and consume (its event source mapping).
OWN_QUEUE = (
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)


@dataclass(frozen=True)
class Function:
    """A function's effective settings: its own values on top of the shared ones, and its role's statements."""

    timeout: int
    memory: Any
    environment: dict[str, Any]
    # (Sid, resource, sorted actions); SAM policy templates' statements have no Sid.
    grants: set[tuple[str | None, str, tuple[str, ...]]]
    log_group: str = "FunctionsLogGroup"
    extra: dict[str, Any] = field(default_factory=dict)


def _grants(*grants: tuple[str | None, str, tuple[str, ...]]) -> set[tuple[str | None, str, tuple[str, ...]]]:
    return {(sid, resource, tuple(sorted(actions))) for sid, resource, actions in grants}


READ_BANK_SECRET = (None, BANK_SECRET, ("secretsmanager:GetSecretValue",))
EXPECTED = {
    "ConnectFunction": Function(
        timeout=15,
        memory=HTTP_MEMORY,
        environment={
            "OAUTH_STATES_TABLE_NAME": {"Ref": "OAuthStatesTable"},
            "OAUTH_CALLBACK_URL": {"Ref": "OAuthCallbackUrl"},
            "RETURN_URL_ALLOWLIST": {"Fn::Join": [",", {"Ref": "ReturnUrlAllowlist"}]},
            "IDEMPOTENCY_TABLE_NAME": {"Ref": "IdempotencyTable"},
            "SYNC_TABLE_NAME": {"Ref": "SyncTable"},
            "SYNC_RUNS_PER_DAY": {"Ref": "SyncRunsPerDay"},
        },
        grants=_grants(
            ("ForgetSyncedTransactions", "SyncTable.Arn", FORGET_SYNCED),
            ("ScheduleSync", "SyncTable.Arn", ("dynamodb:UpdateItem",)),
            ("ReadWriteOwnConnections", "ConnectionsTable.Arn", (*TABLE_CRUD, "dynamodb:Query")),
            ("OAuthStatesAndCompletions", "OAuthStatesTable.Arn", TABLE_CRUD[1:]),
            ("IdempotencyRecords", "IdempotencyTable.Arn", TABLE_CRUD),
            ("DecryptTokensToRevoke", "TokenKey.Arn", ("kms:Decrypt",)),
            READ_BANK_SECRET,
        ),
    ),
    "OAuthCallbackFunction": Function(
        timeout=15,
        memory=HTTP_MEMORY,
        environment={"OAUTH_STATES_TABLE_NAME": {"Ref": "OAuthStatesTable"}},
        grants=_grants(
            ("ConsumeOAuthStates", "OAuthStatesTable.Arn", TABLE_CRUD),
            ("StoreConnections", "ConnectionsTable.Arn", TABLE_CRUD[1:]),
            ("EncryptTokens", "TokenKey.Arn", ("kms:GenerateDataKey", "kms:Decrypt")),
            READ_BANK_SECRET,
        ),
    ),
    "ConsentsFunction": Function(
        timeout=15,
        memory=HTTP_MEMORY,
        environment={"IDEMPOTENCY_TABLE_NAME": {"Ref": "IdempotencyTable"}, "SYNC_TABLE_NAME": {"Ref": "SyncTable"}},
        grants=_grants(
            ("ForgetSyncedTransactions", "SyncTable.Arn", FORGET_SYNCED),
            ("ReadUpdateConnections", "ConnectionsTable.Arn", ("dynamodb:GetItem", "dynamodb:UpdateItem")),
            ("IdempotencyRecords", "IdempotencyTable.Arn", TABLE_CRUD),
            ("UseAndRotateTokens", "TokenKey.Arn", ("kms:Decrypt", "kms:GenerateDataKey")),
            READ_BANK_SECRET,
        ),
    ),
    "AccountsFunction": Function(
        timeout=29,
        memory=HTTP_MEMORY,
        environment={
            "CURSOR_KEY_ID": {"Fn::GetAtt": ["CursorKey", "Arn"]},
            "QUOTA_TABLE_NAME": {"Ref": "QuotaTable"},
            "SYNC_TABLE_NAME": {"Ref": "SyncTable"},
            "EVENT_BUS_NAME": {"Ref": "EventBusName"},
        },
        grants=_grants(
            (
                "ReadUpdateConnections",
                "ConnectionsTable.Arn",
                ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
            ),
            ("UseAndRotateTokens", "TokenKey.Arn", ("kms:Decrypt", "kms:GenerateDataKey")),
            ("DeriveCursorKey", "CursorKey.Arn", ("kms:GenerateMac",)),
            ("CountUnattendedReads", "QuotaTable.Arn", ("dynamodb:Query", "dynamodb:UpdateItem")),
            ("ReadSyncedTransactions", "SyncTable.Arn", ("dynamodb:GetItem", "dynamodb:Query")),
            (
                "StoreLiveReads",
                "SyncTable.Arn",
                ("dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
            ),
            READ_BANK_SECRET,
            PUT_EVENTS,
        ),
    ),
    "AccountSyncFunction": Function(
        timeout=300,
        memory=1769,
        environment={
            "QUOTA_TABLE_NAME": {"Ref": "QuotaTable"},
            "SYNC_TABLE_NAME": {"Ref": "SyncTable"},
            "SYNC_RUNS_PER_DAY": {"Ref": "SyncRunsPerDay"},
            "TRANSACTION_RETENTION_DAYS": {"Ref": "TransactionRetentionDays"},
            "EVENT_BUS_NAME": {"Ref": "EventBusName"},
            "SYNC_FANOUT_QUEUE_URL": {"Fn::If": ["FansOut", {"Ref": "SyncFanoutQueue"}, {"Ref": "AWS::NoValue"}]},
        },
        grants=_grants(
            ("QueryDueSyncs", "${SyncTable.Arn}/index/SyncDueIndex", ("dynamodb:Query",)),
            ("QueryConnectionKeys", "${ConnectionsTable.Arn}/index/RefreshDueIndex", ("dynamodb:Query",)),
            ("ReadConnectionsRefreshTokens", "ConnectionsTable.Arn", ("dynamodb:GetItem", "dynamodb:UpdateItem")),
            ("UseAndRotateTokens", "TokenKey.Arn", ("kms:Decrypt", "kms:GenerateDataKey")),
            ("CountUnattendedReads", "QuotaTable.Arn", ("dynamodb:UpdateItem",)),
            ("WriteSyncedTransactions", "SyncTable.Arn", (*TABLE_CRUD, "dynamodb:Query", "dynamodb:BatchWriteItem")),
            ("FanOutToOwnQueue", "SyncFanoutQueue.Arn", OWN_QUEUE),
            READ_BANK_SECRET,
            PUT_EVENTS,
        ),
    ),
    "TokenRefresherFunction": Function(
        timeout=300,
        memory=1769,
        environment={
            "REFRESH_MARGIN_MINUTES": {"Ref": "RefreshMarginMinutes"},
            "EVENT_BUS_NAME": {"Ref": "EventBusName"},
            "REFRESH_FANOUT_QUEUE_URL": {"Fn::If": ["FansOut", {"Ref": "RefreshFanoutQueue"}, {"Ref": "AWS::NoValue"}]},
        },
        grants=_grants(
            ("QueryDueConnections", "${ConnectionsTable.Arn}/index/RefreshDueIndex", ("dynamodb:Query",)),
            ("LeaseAndUpdateConnections", "ConnectionsTable.Arn", ("dynamodb:GetItem", "dynamodb:UpdateItem")),
            ("UseAndRotateTokens", "TokenKey.Arn", ("kms:Decrypt", "kms:GenerateDataKey")),
            ("FanOutToOwnQueue", "RefreshFanoutQueue.Arn", OWN_QUEUE),
            READ_BANK_SECRET,
            PUT_EVENTS,
        ),
    ),
    "AuditShipperFunction": Function(
        timeout=60,
        memory=512,
        environment={"AUDIT_LOG_GROUP_NAME": {"Ref": "AuditLogGroup"}},
        grants=_grants(
            ("WriteAuditTrail", "AuditLogGroup.Arn", ("logs:CreateLogStream", "logs:PutLogEvents")),
            # SAM's own, for the DeadLetterQueue property
            (None, "AuditShipperDeadLetterQueue.Arn", ("sqs:SendMessage",)),
        ),
        log_group="AuditShipperLogGroup",
        extra={"DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": ["AuditShipperDeadLetterQueue", "Arn"]}}},
    ),
}
# What no function has (each absence is a checkov finding skipped with its reason in template.yaml).
NEVER = ("VpcConfig", "ReservedConcurrentExecutions", "KmsKeyArn")


def _render(value: Any) -> str:
    """An IAM resource as one readable string: ``X.Arn`` for a GetAtt, ``${X}`` for a Ref, a Sub substituted."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        return ".".join(value["Fn::GetAtt"])
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    template = value["Fn::Sub"]
    if isinstance(template, str):
        return template
    text, variables = template
    return re.sub(r"\$\{([^}!]+)\}", lambda m: _render(variables[m[1]]) if m[1] in variables else m[0], text)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _functions(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resources = translated["Resources"]
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}


def _role(translated: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    role_name = function["Role"]["Fn::GetAtt"][0]
    role: dict[str, Any] = translated["Resources"][role_name]["Properties"]
    return role


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def test_every_function_is_translated(translated_template):
    assert set(_functions(translated_template)) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_function_runs_with_the_shared_settings_and_its_own(translated_template, name):
    expected = EXPECTED[name]
    function = _functions(translated_template)[name]
    (layer,) = function["Layers"]
    layer_resource = translated_template["Resources"][layer["Ref"]]

    # Runtime, architecture, handler and tracing from Globals; the one shared layer
    assert {key: function[key] for key in SHARED} == SHARED
    assert layer_resource["Type"] == "AWS::Lambda::LayerVersion"
    assert layer["Ref"].startswith("AispLayer")
    # Its own timeout and memory, or the shared ones
    assert (function["Timeout"], function["MemorySize"]) == (expected.timeout, expected.memory)
    # Every shared variable, its own, and nothing else
    assert function["Environment"]["Variables"] == SHARED_ENVIRONMENT | expected.environment
    assert function["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": {"Ref": expected.log_group}}
    # Nothing else: no VPC, reserved concurrency or environment key; a dead-letter queue where it says so
    own = {"Code", "Description", "Environment", "Layers", "LoggingConfig", "MemorySize", "Role", "Tags", "Timeout"}
    assert set(function) == own | set(SHARED) | set(expected.extra)
    assert {key: function[key] for key in expected.extra} == expected.extra
    assert not set(NEVER) & set(function)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_function_role_grants_exactly_its_statements(translated_template, name):
    role = _role(translated_template, _functions(translated_template)[name])
    statements = _statements(role)

    assert role["ManagedPolicyArns"] == MANAGED_POLICIES
    granted = {(s.get("Sid"), _render(s["Resource"]), tuple(sorted(_as_list(s["Action"])))) for s in statements}
    assert granted == EXPECTED[name].grants
    assert all(s["Effect"] == "Allow" for s in statements)
    # The token key only under the bank-tokens encryption context, whoever uses it
    for statement in statements:
        if _render(statement["Resource"]) == "TokenKey.Arn":
            assert statement["Condition"] == TOKENS, statement.get("Sid")
