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
