"""The local stack's subscription filters (local/logs.py): matching lines delivered as CloudWatch Logs would, a
failed delivery retried, then kept as a dead letter; and the template's filter read as the stack reads it."""

from __future__ import annotations

import base64
import gzip
import json
import logging

import pytest

import aisp.audit  # noqa: F401 - the audit stream's logger, as the functions set it up
from local.logs import ATTEMPTS, SubscriptionDelivery
from local.stack import DEFAULT_TEMPLATE
from local.template import LocalTemplate, Subscription, TemplateError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

SUBSCRIPTION = Subscription(name="Audit", log_group="Functions", key="aisp_audit", value=1, destination="Shipper")


class Destination:
    """A destination function that records the events it gets, or fails while ``failing``."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.failing = False

    def invoke(self, event):
        if self.failing:
            raise RuntimeError("destination failed")
        self.events.append(json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"]))))
        return {}


@pytest.fixture
def delivery():
    destination = Destination()
    # (aisp.audit sets its logger's level; the timer is slowed down: this test delivers by itself)
    handler = SubscriptionDelivery(SUBSCRIPTION, destination, log_group="/aisp/functions", interval=3600)  # type: ignore[arg-type]
    handler.attach()
    yield handler, destination
    handler.detach()


def test_matching_lines_are_delivered_in_one_cloudwatch_logs_event(delivery):
    handler, destination = delivery
    audit_stream = logging.getLogger("aisp.audit")

    audit_stream.info('{"aisp_audit":1,"n":1}')
    audit_stream.info('{"aisp_audit":2,"n":2}')  # another value: not this filter's
    audit_stream.info("not json")
    audit_stream.info('{"aisp_audit":1,"n":3}')

    assert handler.deliver() == 2
    (event,) = destination.events
    assert event["messageType"] == "DATA_MESSAGE" and event["logGroup"] == "/aisp/functions"
    assert event["subscriptionFilters"] == ["Audit"]
    assert [json.loads(e["message"])["n"] for e in event["logEvents"]] == [1, 3]
    assert len({e["id"] for e in event["logEvents"]}) == 2
    assert handler.deliver() == 0


def test_a_failing_destination_gets_the_lines_again_then_they_are_dead_letters(delivery):
    handler, destination = delivery
    destination.failing = True
    logging.getLogger("aisp.audit").info('{"aisp_audit":1,"n":1}')

    for _ in range(ATTEMPTS - 1):
        assert handler.deliver() == 0
    destination.failing = False
    assert handler.deliver() == 1  # the last attempt succeeds: nothing lost

    destination.failing = True
    logging.getLogger("aisp.audit").info('{"aisp_audit":1,"n":2}')
    for _ in range(ATTEMPTS):
        handler.deliver()
    assert handler.dead_letters == ['{"aisp_audit":1,"n":2}']


def test_the_templates_audit_subscription_is_read_as_deployed():
    template = LocalTemplate.load(DEFAULT_TEMPLATE)

    (subscription,) = template.subscriptions({"AuditShipperFunction"})

    assert subscription == Subscription(
        name="AuditSubscription",
        log_group="FunctionsLogGroup",
        key="aisp_audit",
        value=1,
        destination="AuditShipperFunction",
    )
    with pytest.raises(TemplateError, match="DestinationArn"):
        template.subscriptions(set())
