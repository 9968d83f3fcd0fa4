"""Hard-fail records that outlive the stream (issue 13, item 4): a hard-fail consumer's S3
on-failure destination keeps the whole failed invocation, S3 tells the consumer's failure
queue, and the worker reads the object through the same drain and runs its records through
``handle_record`` with the usual dispositions.

Real parts: moto's S3 (a versioned bucket whose object-created notifications go to the failure
queue, as the plugin configures it) and SQS; objects written in Lambda's layout and format
(``streamkit.onfailure``). Faults are injected at the AWS call (``tests.awsfaults``), past
botocore's retries. The rules: delete only when every record was handled, re-sent or parked;
an S3 error leaves the message as it is (nothing of it ran); records are conserved.
"""
from __future__ import annotations

import json

import boto3
import pytest

from reprocess.stream_reader import to_lambda_record
from reprocess.worker import drain
from streamkit import onfailure
from tests.awsfaults import AwsFault, aws_faults
from tests.support.aws import create_consumer_queues, queue_depth, take_all

from . import sample_consumers
from .conftest import index_items
from .test_backstop import FN_ARN, _inject, on_failure_message, stream  # noqa: F401  (the stream fixture)

BUCKET = "userstream-dev-search-indexer-failed-123456789012-us-east-1"
MAPPING = "4a1f0c2e-9b7d-4e8f-a1b2-c3d4e5f6a7b8"
FAST = dict(wait_time_s=0)
PAST_RETRIES = 12  # more calls than botocore's retries make
STREAM_UNREADABLE = (  # had the worker gone to the stream for these records, it would have failed
    AwsFault("test", "dynamodb-streams", "GetShardIterator", "denied", times=100),
    AwsFault("test", "dynamodb-streams", "GetRecords", "denied", times=100),
)


@pytest.fixture
def destination(stream, index_table):  # noqa: F811
    """search-indexer's queues and an on-failure bucket notifying its failure queue."""
    failures, parking = create_consumer_queues("search-indexer")
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    queue_arn = sqs.get_queue_attributes(QueueUrl=failures, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]})
    (test_event,) = take_all(failures)  # S3 (and moto) test the configuration with a message
    assert test_event["body"]["Event"] == "s3:TestEvent"
    return failures, parking, test_event["raw"]


def lambda_records(stream, first: int, last: int) -> list[dict]:  # noqa: F811
    """Records as Lambda delivered them (and as its S3 destination keeps them)."""
    return [to_lambda_record(r, stream["arn"]) for r in stream["records"][first : last + 1]]


def lambda_writes(stream, first: int, last: int, *, at: int = 1_795_000_000, body: bytes | None = None,  # noqa: F811
                  function_arn: str = FN_ARN) -> str:
    """Lambda discards records ``first..last`` to the S3 destination; returns the object's key."""
    if body is None:
        meta = on_failure_message(stream, first, last)
        info = onfailure.parse(meta).batch
        body = json.dumps(onfailure.build(info, function_arn=function_arn, condition="RetryAttemptsExhausted",
                                          invoke_count=4, function_error="Unhandled", at_epoch_s=at,
                                          records=lambda_records(stream, first, last))).encode()
    key = onfailure.s3_object_key(MAPPING, stream["shard"], at)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="application/json")
    return key


def notification(*refs: tuple[str, str | None]) -> str:
    """An S3 event notification as S3 sends it (for what moto's cannot show: version ids, two objects)."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-29T21:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "on-failure",
               "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
               "object": {"key": key, "size": 1, **({"versionId": version} if version else {})}},
    } for key, version in refs]})


def conserved(s) -> bool:
    return s.taken == s.succeeded + s.still_failing + s.parked and s.conserved


def test_a_range_the_stream_no_longer_has_runs_from_its_s3_object(stream, destination):  # noqa: F811
    """The minimal reproduction: the same discarded batch, its metadata parked as unreadable
    once the stream trimmed it, its S3 object run record by record through the drain."""
    failures, parking, _ = destination
    # what an SQS destination would have kept: metadata only, the stream's copy trimmed
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=json.dumps(on_failure_message(stream, 1, 4)))
    trimmed = _inject(boto3.client("dynamodbstreams"), "TrimmedDataAccessException")
    metadata = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, streams=trimmed, **FAST)
    assert (metadata.taken, metadata.parked, metadata.stream_records) == (1, 1, 0) and index_items() == {}
    (parked,) = take_all(parking)
    assert "no longer readable" in parked["attributes"]["parkReason"]

    key = lambda_writes(stream, 1, 4)  # what the S3 destination keeps; S3 tells the failure queue
    (note,) = [m["body"] for m in take_all(failures)]
    assert note["Records"][0]["s3"]["object"]["key"] != key  # URL-encoded, as S3 sends it
    assert [r.key for r in onfailure.object_refs(note)] == [key]
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=json.dumps(note))
    with aws_faults(*STREAM_UNREADABLE) as faults:
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert not faults.injected  # the records came from the object, not from the stream
    assert (s.taken, s.succeeded, s.still_failing, s.parked, s.exit_code) == (1, 1, 0, 0, 0) and conserved(s)
    assert s.stream_records == 4
    assert sorted(index_items()) == ["u0001", "u0002", "u0003", "u0004"]
    assert index_items()["u0003"]["seq"] == stream["records"][3]["dynamodb"]["SequenceNumber"]
    assert queue_depth(failures) == (0, 0) and queue_depth(parking) == (0, 0)


def test_records_that_fail_again_are_captured_as_envelopes_before_the_notification_goes(stream, destination):  # noqa: F811
    failures, parking, _ = destination
    lambda_writes(stream, 1, 4)  # u0003 is in the v2 schema: index_v1 fails on it
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v1, **FAST)
    assert (s.taken, s.succeeded, s.still_failing, s.resent, s.exit_code) == (1, 0, 1, 1, 1) and conserved(s)
    handled = sorted(index_items())
    (copy,) = take_all(failures)  # only the envelope: the notification itself was deleted
    assert copy["body"]["record"] == lambda_records(stream, 3, 3)[0] and copy["body"]["attempts"] == 2
    assert copy["body"]["error"]["type"] == "KeyError" and copy["body"]["consumer"] == "search-indexer"
    assert handled == ["u0001", "u0002", "u0004"]
    assert s.stream_records == len(handled) + 1  # in = handled + captured
    assert queue_depth(parking) == (0, 0)

    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=copy["raw"])
    fixed = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (fixed.succeeded, fixed.exit_code) == (1, 0) and "u0003" in index_items()


@pytest.mark.parametrize("kind,times", [("denied", 1), ("throttle", PAST_RETRIES), ("500", PAST_RETRIES),
                                        ("connection", PAST_RETRIES)])
def test_an_object_that_cannot_be_read_leaves_the_message_then_the_next_run_handles_it(
        stream, destination, kind, times):  # noqa: F811
    failures, parking, _ = destination
    lambda_writes(stream, 0, 2)
    with aws_faults(AwsFault("test", "s3", "GetObject", kind, times=times)) as faults:
        first = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert sum(faults.injected.values()) >= 1
    assert (first.taken, first.succeeded, first.still_failing, first.resent, first.parked) == (1, 0, 1, 0, 0)
    assert conserved(first) and first.exit_code == 1
    assert any(n.startswith("nothing of it was captured") for n in first.notes), first.notes
    assert queue_depth(failures) == (1, 0) and queue_depth(parking) == (0, 0)  # kept, visible again at once
    assert index_items() == {}

    second = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (second.taken, second.succeeded, second.exit_code, second.stream_records) == (1, 1, 0, 3)
    assert sorted(index_items()) == ["u0000", "u0001", "u0002"] and queue_depth(failures) == (0, 0)


def test_every_object_is_read_before_any_record_runs(stream, destination):  # noqa: F811
    """Two objects in one notification, the second unreadable: nothing of the first ran either,
    so the message can stay whole (never half handled and deleted)."""
    failures, _, _ = destination
    first, second = lambda_writes(stream, 0, 1, at=1_795_000_000), lambda_writes(stream, 2, 3, at=1_795_000_060)
    take_all(failures)  # S3's own notifications: this test sends one naming both
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=notification((first, None), (second, None)))
    with aws_faults(AwsFault("test", "s3", "GetObject", "500", times=PAST_RETRIES, after=1)):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.taken, s.still_failing, s.resent, s.stream_records) == (1, 1, 0, 0) and conserved(s)
    assert index_items() == {} and queue_depth(failures) == (1, 0)

    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.succeeded, s.stream_records, s.exit_code) == (1, 4, 0)
    assert sorted(index_items()) == ["u0000", "u0001", "u0002", "u0003"]


def test_the_version_named_by_the_notification_is_the_one_read(stream, destination):  # noqa: F811
    failures, _, _ = destination
    key = lambda_writes(stream, 0, 1)
    take_all(failures)
    s3 = boto3.client("s3")
    (version,) = [v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]]
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"overwritten")  # the key now holds something else
    take_all(failures)  # (and S3 told the queue about that too)
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=notification((key, version)))
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.succeeded, s.stream_records, s.exit_code) == (1, 2, 0)
    assert sorted(index_items()) == ["u0000", "u0001"]


def test_a_missing_object_is_parked_with_the_reason(stream, destination):  # noqa: F811
    failures, parking, _ = destination
    key = lambda_writes(stream, 0, 1)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=key)  # expired by the lifecycle rule, say
    (note,) = [m["raw"] for m in take_all(failures)]
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=note)
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.taken, s.parked, s.exit_code) == (1, 1, 1) and conserved(s)
    (p,) = take_all(parking)
    assert p["raw"] == note  # the notification, byte for byte
    reason = p["attributes"]["parkReason"]
    assert f"s3://{BUCKET}/{key}" in reason and "is missing" in reason and "NoSuchKey" in reason
    assert queue_depth(failures) == (0, 0) and index_items() == {}


@pytest.mark.parametrize("body,why", [
    (b"{not json", "is unusable: not JSON"),
    (json.dumps({"requestContext": {}, "version": "1.0"}).encode(), "is unusable: no batch info"),
])
def test_an_unusable_object_is_parked(stream, destination, body, why):  # noqa: F811
    failures, parking, _ = destination
    key = lambda_writes(stream, 0, 1, body=body)
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.taken, s.parked) == (1, 1) and conserved(s)
    (p,) = take_all(parking)
    assert p["attributes"]["parkReason"].startswith(f"on-failure object s3://{BUCKET}/{key} {why}")
    assert index_items() == {} and queue_depth(failures) == (0, 0)


def test_an_object_from_another_consumers_function_is_parked(stream, destination):  # noqa: F811
    failures, parking, _ = destination
    lambda_writes(stream, 0, 1, function_arn=FN_ARN.replace("search-indexer", "crm-sync"))
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert s.parked == 1 and index_items() == {}
    (p,) = take_all(parking)
    assert "not consumer search-indexer" in p["attributes"]["parkReason"] and BUCKET in p["attributes"]["parkReason"]


def test_s3s_test_event_is_deleted_without_running_anything(destination):
    failures, parking, test_event = destination  # what S3 sent when the notification was set up
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=test_event)
    with aws_faults(AwsFault("test", "s3", "GetObject", "denied", times=100)) as faults:
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, **FAST)
    assert (s.taken, s.succeeded, s.stream_records, s.exit_code) == (1, 1, 0, 0) and not faults.injected
    assert queue_depth(failures) == (0, 0) and queue_depth(parking) == (0, 0)


def test_a_dry_run_counts_notifications_and_reads_nothing(stream, destination):  # noqa: F811
    failures, _, _ = destination
    lambda_writes(stream, 0, 1)
    with aws_faults(AwsFault("test", "s3", "GetObject", "denied", times=100)) as faults:
        s = drain("search-indexer", mode="replay", dry_run=True, handle_record=sample_consumers.index_v2, **FAST)
    assert s.taken == 1 and s.by_error_type == {"OnFailureObject": 1} and not faults.injected
    assert queue_depth(failures) == (1, 0) and index_items() == {}


def test_the_ledger_names_the_object_a_notification_was_read_from(stream, destination, ledger_table):  # noqa: F811
    """The failure ledger hears of a notification like of an on-failure message: one item for
    it naming its s3:// object, and one per record that failed again (captured as an envelope)."""
    from ..streamkit.test_ledger import ledger_items

    failures, _, _ = destination
    key = lambda_writes(stream, 1, 4)  # u0003 fails again under index_v1
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v1, **FAST)
    assert (s.taken, s.still_failing, s.resent, s.ledger_write_failures) == (1, 1, 1, 0) and conserved(s)
    items = ledger_items(ledger_table, "search-indexer")
    (note,) = [i for i in items if "sequenceNumber" not in i]
    assert note["state"] == "handled" and note["settledNote"] == (
        f"read from s3://{BUCKET}/{key}; 1 record(s) failed again and were captured as failures of their own")
    (again,) = [i for i in items if i is not note]
    assert (again["state"], again["errorType"], again["keysText"]) == ("retrying", "KeyError", '{"user_id":"u0003"}')
    (copy,) = take_all(failures)
    assert copy["body"]["record"]["dynamodb"]["SequenceNumber"] == again["sequenceNumber"]

    # an object the worker cannot use is parked, and its item names the object
    gone = lambda_writes(stream, 0, 0, at=1_795_000_100)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=gone)
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert s.parked == 1
    (parked,) = [i for i in ledger_items(ledger_table, "search-indexer") if i["state"] == "parked"]
    assert gone in parked["parkReason"]
