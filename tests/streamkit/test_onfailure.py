"""The on-failure record's one owner: what it builds, it parses back; variants; summaries."""
from __future__ import annotations

import json

import pytest

from streamkit import onfailure
from streamkit.testing import make_record

STREAM = "arn:aws:dynamodb:eu-west-1:123456789012:table/users/stream/2026-11-01T00:00:00.000"
FN = "arn:aws:lambda:eu-west-1:123456789012:function:userstream-prod-crm-sync"


def batch(**kw) -> onfailure.BatchInfo:
    fields = dict(shard_id="shardId-00000001-abc", start_sequence_number="4100", end_sequence_number="4103",
                  stream_arn=STREAM, batch_size=4, first_arrival=onfailure.arrival_iso(1795000000.9),
                  last_arrival=onfailure.arrival_iso(1795000003.2))
    fields.update(kw)
    return onfailure.BatchInfo(**fields)


def test_build_then_parse_round_trips():
    info = batch()
    body = onfailure.build(info, function_arn=FN, condition="RetryAttemptsExhausted", invoke_count=4,
                           function_error="Unhandled", at_epoch_s=1795000010.25)
    wire = json.loads(json.dumps(body))  # what travels through SQS
    # AWS's shape, field for field
    assert set(wire) == {"requestContext", "responseContext", "version", "timestamp", "DDBStreamBatchInfo"}
    assert wire["version"] == "1.0" and wire["timestamp"] == "2026-11-18T11:06:50.250Z"
    assert wire["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert wire["DDBStreamBatchInfo"]["approximateArrivalOfFirstRecord"] == "2026-11-18T11:06:40Z"  # whole seconds
    assert wire["requestContext"]["requestId"]

    msg = onfailure.parse(wire)
    assert msg.batch == info
    assert (msg.function_arn, msg.function_name, msg.condition, msg.invoke_count, msg.function_error) == (
        FN, "userstream-prod-crm-sync", "RetryAttemptsExhausted", 4, "Unhandled")
    assert msg.timestamp == wire["timestamp"] and msg.records is None
    assert onfailure.parse(json.dumps(wire)) == msg  # from the body text too
    assert msg.to_dict() == wire  # and back to the same record


def test_an_s3_destination_record_carries_the_invocation_records():
    records = [make_record("INSERT", keys={"user_id": f"u{i}"}, new_image={"user_id": f"u{i}"}) for i in range(2)]
    body = onfailure.build(batch(batch_size=2), function_arn=FN, condition="RecordAgeExceeded", invoke_count=1,
                           at_epoch_s=1795000010, records=records)
    assert json.loads(body["payload"]) == {"Records": records}  # the whole invocation, as a JSON string
    msg = onfailure.parse(json.loads(json.dumps(body)))
    assert msg.records == records and msg.batch.batch_size == 2
    body["payload"] = {"Records": records}  # an object instead of a string reads the same
    assert onfailure.parse(body).records == records
    body["payload"] = '{"nope": 1}'
    with pytest.raises(onfailure.OnFailureMessageError, match="payload has no Records list"):
        onfailure.parse(body)


@pytest.mark.parametrize("body, reason", [
    ({"DDBStreamBatchInfo": "x"}, "DDBStreamBatchInfo is not an object"),
    ({"DDBStreamBatchInfo": {"startSequenceNumber": "1", "endSequenceNumber": "2", "streamArn": "a"}}, "lacks shardId"),
    ({"DDBStreamBatchInfo": {"shardId": "s", "startSequenceNumber": "1", "endSequenceNumber": "x", "streamArn": "a"}},
     "endSequenceNumber is not a sequence number"),
    ({"version": 1, "consumer": "crm-sync"}, "no batch info"),
    ("{not json", "not JSON"),
])
def test_unusable_records_say_why(body, reason):
    with pytest.raises(onfailure.OnFailureMessageError, match=reason):
        onfailure.parse(body)


def test_only_records_with_batch_info_are_on_failure_records():
    assert onfailure.is_on_failure({"DDBStreamBatchInfo": {}})
    assert not onfailure.is_on_failure({"version": 1}) and not onfailure.is_on_failure(None)
    assert not onfailure.is_on_failure("DDBStreamBatchInfo")


def test_summary_for_the_operator():
    body = onfailure.build(batch(), function_arn=FN, condition="RetryAttemptsExhausted", invoke_count=4,
                           at_epoch_s=1795000010)
    s = onfailure.summarize(body)
    assert (s["kind"], s["errorType"], s["sequenceNumber"], s["attempts"], s["capturedAt"]) == (
        "on-failure", "RetryAttemptsExhausted", "4100", 4, "2026-11-18T11:06:50.000Z")
    assert s["errorMessage"] == "4 records of shardId-00000001-abc 4100..4103"
    body["DDBStreamBatchInfo"].pop("shardId")
    broken = onfailure.summarize(body)  # still shown, with why it cannot be used
    assert broken["kind"] == "on-failure" and "lacks shardId" in broken["errorMessage"]


# --- the S3 destination: its notifications and objects ---------------------------------------------
def s3_notification(*objects: dict, event: str = "ObjectCreated:Put") -> dict:
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event,
                         "eventTime": "2026-11-29T21:00:00.000Z",
                         "s3": {"bucket": {"name": "userstream-prod-crm-sync-failed-1-eu-west-1"}, "object": o}}
                        for o in objects]}


def test_an_s3_notification_names_the_objects_lambda_wrote():
    key = onfailure.s3_object_key("4a1f", "shardId-00000001-abc", 1795000010, unique="u1")
    encoded = key.replace("/", "%2F") + "+x"  # S3 sends keys URL-encoded, spaces as '+'
    body = s3_notification({"key": encoded, "size": 812, "versionId": "v1"}, {"key": "other/key", "size": 3})
    assert onfailure.is_object_notification(body) and not onfailure.is_on_failure(body)
    first, second = onfailure.object_refs(body)
    assert (first.key, first.version_id, first.size, first.shard_id) == (key + " x", "v1", 812, "shardId-00000001-abc")
    assert first.url == f"s3://userstream-prod-crm-sync-failed-1-eu-west-1/{key} x" and first.event_time
    assert (second.version_id, second.shard_id) == (None, None)  # not Lambda's layout: no shard known


def test_s3s_test_event_names_no_object():
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-29T21:00:00.000Z", "Bucket": "b"}
    assert onfailure.is_object_notification(body) and onfailure.is_test_event(json.dumps(body))
    assert onfailure.object_refs(body) == []


@pytest.mark.parametrize("body, reason", [
    (s3_notification({"key": "k"}, event="ObjectRemoved:Delete"), "S3 event ObjectRemoved:Delete is not an object creation"),
    (s3_notification({"size": 3}), "S3 event names no bucket and key"),
    ({"Records": [{"eventSource": "aws:dynamodb"}]}, "not an S3 event notification"),  # a Lambda event: not ours
])
def test_a_notification_that_names_no_created_object_says_why(body, reason):
    with pytest.raises(onfailure.OnFailureMessageError, match=reason):
        onfailure.object_refs(body)


def test_an_objects_content_parses_as_the_record_and_errors_name_the_object():
    records = [make_record("INSERT", keys={"user_id": "u1"}, new_image={"user_id": "u1"})]
    body = onfailure.build(batch(batch_size=1), function_arn=FN, condition="RetryAttemptsExhausted", invoke_count=4,
                           at_epoch_s=1795000010, records=records)
    ref = onfailure.ObjectRef("b", "aws/lambda/m/shardId-1/2026/11/18/t-u")
    assert onfailure.parse_object(json.dumps(body).encode(), ref).records == records
    with pytest.raises(onfailure.OnFailureMessageError, match=r"^on-failure object s3://b/aws/lambda/m/shardId-1/"
                                                             r"2026/11/18/t-u is unusable: not JSON"):
        onfailure.parse_object(b"\x00garbage", ref)
