"""The refresher's AWS adapters: the lifecycle events to EventBridge and the fan-out requests to SQS (moto)."""

from __future__ import annotations

import pytest


def test_the_adapters_report_what_aws_refused(aws):
    import boto3
    from botocore.stub import Stubber

    from aisp.aws.messaging import EventBridgePublisher, SqsFanoutQueue
    from aisp.errors import EventPublishError, FanoutError
    from aisp.models.refresh import ConnectionLifecycleDetail, FanoutRequest, LifecycleEvent, LifecycleEventType

    # An entry the bus refuses (moto cannot produce one: botocore's Stubber does)
    events = boto3.client("events")
    event = LifecycleEvent(
        detail_type=LifecycleEventType.CONNECTION_EXPIRING,
        detail=ConnectionLifecycleDetail(
            connection_id="cn_1", user_id="u", bank_code="13807", reauth_due_at=None, occurred_at="2026-11-24T10:00:00Z"
        ),
    )
    with Stubber(events) as stub:
        stub.add_response("put_events", {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]})
        with pytest.raises(EventPublishError) as refused:
            EventBridgePublisher("fintech-bus", client=events).publish(event)
    assert refused.value.details["error_code"] == "InternalFailure"
    # A bus that does not exist
    with pytest.raises(EventPublishError):
        EventBridgePublisher("no-such-bus", client=boto3.client("events")).publish(event)

    # The fan-out queue takes any number of requests (batches of 10), and a missing queue is a FanoutError
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="fanout")["QueueUrl"]
    requests = [FanoutRequest(shards=(i,), run_id="r", requested_at="2026-11-24T10:00:00Z") for i in range(16)]
    SqsFanoutQueue(url, client=sqs).send(requests)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "16"
    with pytest.raises(FanoutError):
        SqsFanoutQueue(url.replace("fanout", "missing"), client=sqs).send(requests[:1])
