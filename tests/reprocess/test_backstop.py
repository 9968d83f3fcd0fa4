"""The hard-fail backstop: Lambda's on-failure metadata resolved against a moto stream.

No event-source mapping is ever attached to the stream (moto would empty the shard)."""
from __future__ import annotations

import base64
import json
from datetime import datetime

import boto3
import pytest

from reprocess.stream_reader import to_lambda_record
from reprocess.worker import drain
from streamkit import onfailure
from tests.support.aws import create_consumer_queues, create_users_table, queue_count, stream_records, take_all
from tests.support.failures import capture, send_bodies
from tests.support.users import put_users, user_item

from . import sample_consumers
from .conftest import index_items

FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:userstream-dev-search-indexer"


@pytest.fixture
def stream(env, monkeypatch):
    """A users table with a NEW_AND_OLD_IMAGES stream, 6 items written from one thread."""
    arn = create_users_table("users")
    monkeypatch.setenv("USERS_TABLE", "users")
    put_users(user_item(i, v2=(i == 3), avatar=bytes([i, 255])) for i in range(6))
    records = stream_records(arn)
    assert len(records) == 6
    shard = boto3.client("dynamodbstreams").describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    return {"arn": arn, "shard": shard, "records": records}


def on_failure_message(stream, first: int, last: int) -> dict:
    seqs = [r["dynamodb"]["SequenceNumber"] for r in stream["records"]]
    return {
        "requestContext": {
            "requestId": "12a8a0fa-f8d2-4d42-a6e3-72bae7d1e2f9",
            "functionArn": FN_ARN,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 4,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-22T10:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": stream["shard"],
            "startSequenceNumber": seqs[first],
            "endSequenceNumber": seqs[last],
            "approximateArrivalOfFirstRecord": "2026-11-22T09:59:00Z",
            "approximateArrivalOfLastRecord": "2026-11-22T09:59:01Z",
            "batchSize": last - first + 1,
            "streamArn": stream["arn"],
        },
    }


def test_to_lambda_record_matches_lambdas_format(stream):
    raw = stream["records"][0]
    rec = to_lambda_record(raw, stream["arn"])
    assert rec["eventSourceARN"] == stream["arn"]
    assert rec["eventVersion"] == "1.1" and rec["eventSource"] == "aws:dynamodb" and rec["awsRegion"] == "us-east-1"
    ddb = rec["dynamodb"]
    assert isinstance(ddb["ApproximateCreationDateTime"], int)
    assert ddb["ApproximateCreationDateTime"] == int(raw["dynamodb"]["ApproximateCreationDateTime"].timestamp())
    assert ddb["NewImage"]["avatar"] == {"B": base64.b64encode(bytes([0, 255])).decode()}
    assert ddb["Keys"] == {"user_id": {"S": "u0000"}}
    json.dumps(rec)  # plain JSON, like Lambda's event
    assert isinstance(raw["dynamodb"]["ApproximateCreationDateTime"], datetime)  # input untouched


def test_to_lambda_record_accepts_raw_json_shapes():
    raw = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1700000000.123,
            "Keys": {"id": {"B": "AAE="}},
            "SequenceNumber": "100",
            "SizeBytes": 10,
            "StreamViewType": "KEYS_ONLY",
        },
    }
    rec = to_lambda_record(raw, "arn:aws:dynamodb:eu-west-1:1:table/t/stream/x")
    assert rec["dynamodb"]["ApproximateCreationDateTime"] == 1700000000
    assert rec["dynamodb"]["Keys"] == {"id": {"B": "AAE="}}
    assert rec["awsRegion"] == "eu-west-1"


def test_parse_on_failure_message(stream):
    info = onfailure.parse(on_failure_message(stream, 1, 3))
    assert info.batch.batch_size == 3 and info.function_name == "userstream-dev-search-indexer"
    assert info.condition == "RetryAttemptsExhausted" and info.invoke_count == 4
    with pytest.raises(onfailure.OnFailureMessageError, match="lacks shardId"):
        onfailure.parse({"DDBStreamBatchInfo": {"startSequenceNumber": "1", "endSequenceNumber": "2", "streamArn": "a"}})


def test_on_failure_message_is_resolved_from_the_stream(stream, index_table):
    failures, parking = create_consumer_queues("search-indexer")
    send_bodies(failures, [json.dumps(on_failure_message(stream, 1, 4))])
    seen = []

    def handler(record):
        seen.append(record)
        sample_consumers.index_v1(record)  # u0003 is v2 schema: fails

    s = drain("search-indexer", mode="replay", handle_record=handler, **{"wait_time_s": 0})
    assert (s.taken, s.stream_records, s.still_failing, s.parked) == (1, 4, 1, 0) and s.conserved
    seqs = [r["dynamodb"]["SequenceNumber"] for r in stream["records"]]
    assert [r.sequence_number for r in seen] == seqs[1:5]
    assert all(r.source_arn == stream["arn"] and r.raw["eventVersion"] == "1.1" for r in seen)
    assert set(index_items()) == {"u0001", "u0002", "u0004"}
    # The metadata message became a real envelope for the one failing record: it outlives the stream.
    (left,) = take_all(failures)
    env = left["body"]
    assert env["version"] == 1 and env["consumer"] == "search-indexer" and env["attempts"] == 2
    assert env["record"]["dynamodb"]["SequenceNumber"] == seqs[3]
    assert env["record"]["dynamodb"]["NewImage"]["firstname"] == {"S": "Ada"}
    assert env["error"]["type"] == "KeyError"
    assert queue_count(parking) == 0

    # After the fix the envelope drains like any other.
    capture(failures, [env])
    s2 = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, wait_time_s=0)
    assert s2.succeeded == 1 and set(index_items()) == {"u0001", "u0002", "u0003", "u0004"}


def _inject(streams, code: str, only_type: str | None = None):
    """Make GetShardIterator answer ``code`` (moto answers 500 for trimmed positions)."""
    from botocore.awsrequest import AWSResponse

    def hook(request, **_):
        body = json.loads(request.body or b"{}")
        if only_type and body.get("ShardIteratorType") != only_type:
            return None
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}).encode()

        class Raw:
            def stream(self, **kw):
                yield payload

        resp = AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, Raw())
        resp._content = payload
        return resp

    streams.meta.events.register("before-send.dynamodb-streams.GetShardIterator", hook)
    return streams


def test_trimmed_start_falls_back_to_latest_for_surviving_records(stream, index_table):
    failures, _ = create_consumer_queues("search-indexer")
    boto3.resource("dynamodb").Table("users").put_item(Item=user_item(2, fullname="Renamed Since"))
    send_bodies(failures, [json.dumps(on_failure_message(stream, 1, 2))])
    streams = _inject(boto3.client("dynamodbstreams"), "TrimmedDataAccessException", only_type="AT_SEQUENCE_NUMBER")
    seen = []

    def handler(record):
        seen.append(record)
        sample_consumers.index_v2(record)

    s = drain("search-indexer", mode="replay", handle_record=handler, streams=streams, wait_time_s=0)
    assert (s.succeeded, s.parked) == (1, 0)
    assert [r.event_name for r in seen] == ["MODIFY", "MODIFY"]  # rebuilt from the table (latest)
    assert index_items()["u0002"]["name"] == "Renamed Since"
    assert queue_count(failures) == 0


def test_expired_range_is_parked_with_a_clear_reason(stream, index_table):
    failures, parking = create_consumer_queues("search-indexer")
    body = json.dumps(on_failure_message(stream, 0, 5))
    send_bodies(failures, [body])
    streams = _inject(boto3.client("dynamodbstreams"), "TrimmedDataAccessException")

    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, streams=streams, wait_time_s=0)
    assert (s.taken, s.parked, s.exit_code) == (1, 1, 1)
    (p,) = take_all(parking)
    assert p["raw"] == body  # the metadata, byte for byte
    assert "no longer readable" in p["attributes"]["parkReason"]
    assert queue_count(failures) == 0 and index_items() == {}


def test_on_failure_message_of_another_function_is_parked(stream):
    failures, parking = create_consumer_queues("search-indexer")
    msg = on_failure_message(stream, 0, 1)
    msg["requestContext"]["functionArn"] = "arn:aws:lambda:us-east-1:123456789012:function:userstream-dev-crm-sync"
    send_bodies(failures, [json.dumps(msg)])
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, wait_time_s=0)
    assert s.parked == 1
    (p,) = take_all(parking)
    assert "not consumer search-indexer" in p["attributes"]["parkReason"]


def test_a_stream_read_failure_leaves_the_message_in_the_queue(stream, index_table):
    """Reading the range fails for a reason other than "gone" (here AccessDenied): no record
    is known to be handled or captured, so the on-failure message is not deleted."""
    failures, parking = create_consumer_queues("search-indexer")
    body = json.dumps(on_failure_message(stream, 1, 3))
    send_bodies(failures, [body])
    streams = _inject(boto3.client("dynamodbstreams"), "AccessDeniedException")
    seen = []

    s = drain("search-indexer", mode="replay", handle_record=seen.append, streams=streams, wait_time_s=0)
    assert (s.taken, s.succeeded, s.still_failing, s.resent, s.parked) == (1, 0, 1, 0, 0) and s.conserved
    assert s.exit_code == 1 and seen == []
    assert s.by_error_type == {"ClientError": 1}
    assert any("AccessDenied" in n for n in s.notes)
    (left,) = take_all(failures)
    assert left["raw"] == body  # the metadata, untouched, visible again for the next run
    assert queue_count(parking) == 0 and index_items() == {}
