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


# botocore's ``max_attempts`` counts the retries: the schedule's 3 are 4 tries in all
@pytest.mark.parametrize(("request_path", "attempts"), [(False, 4), (True, 1)])
def test_a_live_reads_publisher_tries_once_where_the_schedules_retries(aws, request_path, attempts):
    from botocore.exceptions import EndpointConnectionError

    from aisp.aws.messaging import EventBridgePublisher
    from aisp.errors import EventPublishError
    from aisp.models.refresh import ConnectionLifecycleDetail, LifecycleEvent, LifecycleEventType

    # A bus that cannot be reached: the schedule's publisher tries again, a live read's does not
    publisher = EventBridgePublisher("fintech-bus", request_path=request_path)
    sent: list[str] = []

    def unreachable(**_: object) -> None:
        sent.append("PutEvents")
        raise EndpointConnectionError(endpoint_url="https://events.eu-west-3.amazonaws.com")

    publisher._events().meta.events.register("before-send.events.PutEvents", unreachable)
    event = LifecycleEvent(
        detail_type=LifecycleEventType.CONNECTION_EXPIRING,
        detail=ConnectionLifecycleDetail(
            connection_id="cn_1", user_id="u", bank_code="13807", reauth_due_at=None, occurred_at="2026-11-24T10:00:00Z"
        ),
    )

    with pytest.raises(EventPublishError):
        publisher.publish(event)

    assert len(sent) == attempts
