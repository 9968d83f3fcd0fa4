"""The classifier is a pure function of (message, consumer): every kind of message, no AWS."""
from __future__ import annotations

import json

import pytest

from reprocess.classify import Kind, classify
from streamkit import StreamRecord, onfailure
from streamkit.envelope import build_envelope, dumps
from streamkit.testing import make_record

CONSUMER = "search-indexer"
FN_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:userstream-dev-{CONSUMER}"
SENT_MS = "1795000000000"  # SentTimestamp
SENT_ISO = "2026-11-18T11:06:40.000Z"


def message(body: str) -> dict:
    return {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": body, "Attributes": {"SentTimestamp": SENT_MS}}


def record(user_id: str = "u1", seq: str = "4200", source: str = "dynamodb", at: float = 1_795_000_000) -> dict:
    return make_record("INSERT", keys={"user_id": user_id}, new_image={"user_id": user_id}, sequence_number=seq,
                       source=source, created=at)


def envelope(consumer: str = CONSUMER, **kw) -> dict:
    return build_envelope(consumer=consumer, record=kw.pop("record", record()),
                          error={"type": "KeyError", "message": "'fullname'", "traceback": ""},
                          captured_at="2026-11-01T00:00:00.000Z", **kw)


def on_failure_body(function_arn: str = FN_ARN, **batch) -> dict:
    info = onfailure.BatchInfo(shard_id="shardId-1", start_sequence_number="100", end_sequence_number="103",
                               stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/x",
                               batch_size=4)
    body = onfailure.build(info, function_arn=function_arn, condition="RetryAttemptsExhausted", invoke_count=3,
                           at_epoch_s=1795000100)
    body["DDBStreamBatchInfo"].update(batch)
    return body


def test_a_valid_envelope_runs_grouped_by_item_key_in_change_order():
    env = envelope(record=record("u7", seq="900"))
    c = classify(message(dumps(env)), CONSUMER)
    assert c.kind is Kind.ENVELOPE and c.park_reason is None
    assert c.envelope is not None and c.envelope.record == env["record"]
    assert c.error_type == "KeyError"
    assert c.group == json.dumps({"user_id": {"S": "u7"}}, sort_keys=True)
    assert c.order == StreamRecord(env["record"]).change_order
    assert c.seen_at == "2026-11-01T00:00:00.000Z"  # capture time, not the send time
    # two records of one item share a group; another item does not
    assert classify(message(dumps(envelope(record=record("u7", "901")))), CONSUMER).group == c.group
    assert classify(message(dumps(envelope(record=record("u8")))), CONSUMER).group != c.group


def test_a_claim_check_stub_is_an_envelope_whose_record_comes_from_s3():
    ref = {"bucket": "claims", "key": "claim-checks/a.json"}
    c = classify(message(dumps(envelope(record=record("u9", "77"), payload_ref=ref))), CONSUMER)
    assert c.kind is Kind.ENVELOPE and c.envelope.payload_ref == ref
    assert "NewImage" not in c.envelope.record["dynamodb"]  # only the stub travels in the message
    assert c.group == json.dumps({"user_id": {"S": "u9"}}, sort_keys=True)
    assert c.order == StreamRecord(record("u9", "77")).change_order  # the stub keeps what orders it


def test_an_on_failure_record_of_this_consumers_function_is_grouped_by_shard():
    c = classify(message(json.dumps(on_failure_body())), CONSUMER)
    assert c.kind is Kind.ON_FAILURE and c.park_reason is None
    assert c.on_failure.batch.start_sequence_number == "100" and c.on_failure.batch.batch_size == 4
    assert c.error_type == "DDBStreamBatchInfo" and c.group == "shard:shardId-1"
    assert c.seen_at == "2026-11-18T11:08:20.000Z"  # the record's own timestamp, not SentTimestamp


@pytest.mark.parametrize("body, reason, error_type", [
    ("not json at all", "malformed envelope: body is not JSON", None),
    ('["a", "list"]', "malformed envelope: body is not a JSON object", None),
    (dumps({**envelope(), "version": 99}), "malformed envelope: unsupported envelope version 99", None),
    (dumps(envelope("crm-sync")), "envelope for consumer 'crm-sync' found in search-indexer's queue", "KeyError"),
    (dumps(envelope("billing")), "unknown consumer 'billing' in envelope", "KeyError"),
    (json.dumps(on_failure_body(FN_ARN.replace(CONSUMER, "crm-sync"))),
     "on-failure message from function userstream-dev-crm-sync, not consumer search-indexer", None),
    (json.dumps(on_failure_body(startSequenceNumber="abc")),
     "unusable on-failure message: DDBStreamBatchInfo.startSequenceNumber is not a sequence number", None),
])
def test_what_cannot_run_is_parked_with_its_reason(body, reason, error_type):
    c = classify(message(body), CONSUMER)
    assert c.kind is Kind.PARK and c.park_reason.startswith(reason)
    assert c.error_type == error_type


def test_a_body_without_a_capture_time_is_dated_by_its_send_time():
    assert classify(message("not json"), CONSUMER).seen_at == SENT_ISO


def test_classify_is_pure():
    msg = message(dumps(envelope()))
    before = json.dumps(msg, sort_keys=True)
    assert classify(msg, CONSUMER) == classify(msg, CONSUMER)
    assert json.dumps(msg, sort_keys=True) == before  # the message is not changed
    # "known" decides what an unknown consumer is, without the registry
    assert classify(message(dumps(envelope("billing"))), "billing", known={"billing"}).kind is Kind.ENVELOPE


def test_captures_of_one_item_from_kinesis_group_together_and_sort_by_change_not_arrival():
    """Kinesis may deliver one item's changes out of order: the later change can carry the
    lower Kinesis sequence number. The worker runs them oldest change first."""
    newer = classify(message(dumps(envelope(record=record("u7", "100", source="kinesis", at=1_795_000_002)))), CONSUMER)
    older = classify(message(dumps(envelope(record=record("u7", "200", source="kinesis", at=1_795_000_001)))), CONSUMER)
    assert newer.kind is older.kind is Kind.ENVELOPE and newer.group == older.group
    assert sorted([newer, older], key=lambda c: c.order) == [older, newer]


def s3_note(*keys: str) -> str:
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "eventTime": "2026-11-29T21:00:00.000Z",
                                    "s3": {"bucket": {"name": "bkt"}, "object": {"key": k}}} for k in keys]})


def test_an_s3_notification_is_an_on_failure_object_grouped_by_its_shard():
    key = onfailure.s3_object_key("m1", "shardId-7", 1_795_000_000)
    c = classify(message(s3_note(key)), CONSUMER)
    assert c.kind is Kind.ON_FAILURE_OBJECT and c.error_type == "OnFailureObject"
    assert c.group == "shard:shardId-7" and c.order == key and c.seen_at == "2026-11-29T21:00:00.000Z"
    assert [r.url for r in c.objects] == [f"s3://bkt/{key}"]
    meta = classify(message(json.dumps(on_failure_body(shardId="shardId-7"))), CONSUMER)
    assert meta.group == c.group  # one shard's metadata and objects run one after the other


def test_s3s_test_event_and_a_broken_notification():
    c = classify(message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "bkt"})), CONSUMER)
    assert c.kind is Kind.ON_FAILURE_OBJECT and c.objects == () and c.error_type == "s3:TestEvent"
    bad = json.loads(s3_note("k"))
    bad["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    p = classify(message(json.dumps(bad)), CONSUMER)
    assert p.kind is Kind.PARK
    assert p.park_reason == "unusable S3 notification: S3 event ObjectRemoved:Delete is not an object creation"
