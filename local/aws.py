"""Local AWS: a moto server and the template's resources created in it (tables, KMS keys and aliases, the secret).

Tables are created from the template's own ``AttributeDefinitions``/``KeySchema``/indexes/TTL, so they cannot
drift from what is deployed. Resources the local stack does not emulate are listed at start; a function that
refers to one fails at start too (:class:`~local.template.Resolver`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import ThreadedWSGIServer

from local import moto_fixes
from local.servers import TrackedConnectionsMixin
from local.template import REGION, LocalTemplate, Resolver, ResourceValue

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger("local.aws")

FAKE_CREDENTIALS: Final[Mapping[str, str]] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TABLE_NAME_PREFIX: Final = "aisp-"
TABLE_PROPERTIES: Final = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)
HANDLED_TYPES: Final = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::Logs::LogGroup",
        "AWS::Serverless::Function",
        "AWS::Serverless::HttpApi",
        "AWS::Serverless::LayerVersion",
    }
)


class _TrackedWsgiServer(TrackedConnectionsMixin, ThreadedWSGIServer):
    """werkzeug's threaded server, remembering open connections so that stopping can end keep-alives."""


class LocalMotoServer(ThreadedMotoServer):
    """A ``ThreadedMotoServer`` that binds in the caller's thread and really releases its port.

    The stock class binds inside its thread: a port in use makes werkzeug call ``sys.exit`` there and ``start()``
    then waits forever. Here the socket is bound first (an ``OSError`` reaches the caller), handed to werkzeug
    by file descriptor, and :meth:`stop` also ends open keep-alive connections (boto3 pools them), so no handler
    thread outlives the server.
    """

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 5000, *, url_host: str | None = None) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._tracked: _TrackedWsgiServer | None = None
        # Bound to every interface (0.0.0.0) for containers, but reached on loopback from this machine.
        self._url_host = url_host or ip_address

    def start(self) -> None:
        """Bind, then serve from a background thread."""
        moto_fixes.install()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._ip_address, self._port))
            listener.listen(128)
            server = _TrackedWsgiServer(
                self._ip_address,
                self._port,
                DomainDispatcherApplication(create_backend_app),
                handler=MotoRequestHandler,
                fd=listener.fileno(),
            )
        finally:
            listener.close()  # werkzeug holds its own duplicate of the descriptor
        self._server = self._tracked = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-moto", daemon=True
        )
        self._thread.start()
        self._server_ready_event.set()

    @property
    def url(self) -> str:
        """``http://host:port`` of the server (``url_host`` if given)."""
        _, port = self.get_host_and_port()
        return f"http://{self._url_host}:{port}"

    def stop(self) -> None:
        """Stop serving, end open connections and release the port (werkzeug closes it after serving)."""
        self._server_ready_event.clear()
        if self._tracked is not None:
            self._tracked.shutdown()
            self._tracked.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)


def aws_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for moto with fake credentials (never the caller's own)."""
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION, **FAKE_CREDENTIALS)  # type: ignore[call-overload]


def local_table_name(logical_id: str) -> str:
    """``ConnectionsTable`` → ``aisp-connections``; ``OAuthStatesTable`` → ``aisp-oauth-states``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", logical_id.removesuffix("Table"))
    return TABLE_NAME_PREFIX + words.lower()


def _create_key(kms: KMSClient, properties: Mapping[str, Any]) -> ResourceValue:
    metadata = kms.create_key(
        Description=str(properties.get("Description", "")),
        KeyUsage=properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
        KeySpec=properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
    )["KeyMetadata"]
    return ResourceValue(ref=metadata["KeyId"], attributes={"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})


def local_log_group_name(logical_id: str) -> str:
    """``AuditLogGroup`` → ``/aisp/audit`` (CloudFormation would generate a name; ours is readable)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", logical_id.removesuffix("LogGroup").removesuffix("Logs"))
    return "/aisp/" + words.lower()


def _create_log_group(logs: Any, name: str, properties: Mapping[str, Any]) -> ResourceValue:
    arguments: dict[str, Any] = {"logGroupName": name}
    if properties.get("KmsKeyId"):
        arguments["kmsKeyId"] = str(properties["KmsKeyId"])
    logs.create_log_group(**arguments)
    if properties.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(properties["RetentionInDays"]))
    (group,) = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return ResourceValue(ref=name, attributes={"Arn": str(group["arn"])})


def _create_table(dynamodb: DynamoDBClient, name: str, properties: Mapping[str, Any]) -> ResourceValue:
    arguments: dict[str, Any] = {key: properties[key] for key in TABLE_PROPERTIES if key in properties}
    stream = properties.get("StreamSpecification")
    if stream:
        arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    description = dynamodb.create_table(TableName=name, **arguments)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    attributes = {"Arn": description["TableArn"]}
    if "LatestStreamArn" in description:
        attributes["StreamArn"] = description["LatestStreamArn"]
    return ResourceValue(ref=name, attributes=attributes)


def provision(template: LocalTemplate, resolver: Resolver, *, endpoint_url: str) -> dict[str, ResourceValue]:
    """Create the template's KMS keys, aliases, log groups and DynamoDB tables in moto; record them in ``resolver``.

    Returns
    -------
    dict[str, ResourceValue]
        Logical id → what ``!Ref``/``!GetAtt`` give for it (also added to ``resolver.resources``).

    Raises
    ------
    local.template.TemplateError
        A property refers to something that cannot be resolved locally.
    """
    kms = aws_client("kms", endpoint_url)
    dynamodb = aws_client("dynamodb", endpoint_url)
    logs = aws_client("logs", endpoint_url)
    created: dict[str, ResourceValue] = {}
    try:
        for name, properties in template.resources_of_type("AWS::KMS::Key"):
            created[name] = resolver.resources[name] = _create_key(kms, resolver.resolve(properties, name))
        for name, properties in template.resources_of_type("AWS::KMS::Alias"):
            resolved = resolver.resolve(properties, name)
            kms.create_alias(AliasName=resolved["AliasName"], TargetKeyId=resolved["TargetKeyId"])
            created[name] = resolver.resources[name] = ResourceValue(ref=resolved["AliasName"])
        for name, properties in template.resources_of_type("AWS::Logs::LogGroup"):
            resolved = resolver.resolve(properties, name)
            group = str(resolved.get("LogGroupName") or local_log_group_name(name))
            created[name] = resolver.resources[name] = _create_log_group(logs, group, resolved)
        for name, properties in template.resources_of_type("AWS::DynamoDB::Table"):
            resolved = resolver.resolve(properties, name)
            table_name = str(resolved.get("TableName") or local_table_name(name))
            created[name] = resolver.resources[name] = _create_table(dynamodb, table_name, resolved)
    finally:
        kms.close()
        dynamodb.close()
        logs.close()
    skipped = sorted(
        f"{name} ({resource.get('Type')})"
        for name, resource in template.resources.items()
        if resource.get("Type") not in HANDLED_TYPES
    )
    if skipped:
        logger.info("not emulated locally (a reference to them fails at start): %s", ", ".join(skipped))
    return created


def create_secret(name: str, value: Mapping[str, Any], *, endpoint_url: str) -> str:
    """Create the secret ``name`` holding ``value`` as JSON; returns its ARN."""
    client = aws_client("secretsmanager", endpoint_url)
    try:
        return str(client.create_secret(Name=name, SecretString=json.dumps(dict(value)))["ARN"])
    finally:
        client.close()


def reset_moto(endpoint_url: str) -> None:
    """Empty every moto backend (state is process-wide: a previous stack's tables would still be there)."""
    import requests  # noqa: PLC0415 - only needed here

    response = requests.post(f"{endpoint_url}/moto-api/reset", timeout=10)
    if response.status_code != 200:  # noqa: PLR2004
        raise RuntimeError(f"could not reset moto at {endpoint_url}: HTTP {response.status_code}")
