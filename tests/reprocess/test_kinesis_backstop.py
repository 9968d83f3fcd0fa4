"""Hard-fail on Kinesis: Lambda's KinesisBatchInfo resolved from a Kinesis stream on moto and
drained by the worker, exactly as DDBStreamBatchInfo is from a DynamoDB stream.

The Kinesis stream is filled the way the local runtime fills it: the table's changes, copied
by ``local.bridge`` in the Kinesis Data Streams for DynamoDB record format."""
from __future__ import annotations

import json

import boto3
import pytest

from local.bridge import KinesisBridge
from reprocess import kinesis_reader
from reprocess.worker import drain
from streamkit import StreamRecord, onfailure, sources
from tests.support.aws import create_consumer_queues, create_users_table, queue_count, take_all
from tests.support.failures import capture, send_bodies
from tests.support.users import put_users, user_item

from . import sample_consumers
from .conftest import index_items

FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:userstream-dev-search-indexer"


@pytest.fixture
def kinesis_stream(env, monkeypatch):
    """A users table whose 6 changes (u0003 in the v2 schema) reached a Kinesis stream."""
    create_users_table("users")
    monkeypatch.setenv("USERS_TABLE", "users")
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="users-changes", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="users-changes")["StreamDescriptionSummary"]["StreamARN"]
    put_users(user_item(i, v2=(i == 3), avatar=bytes([i, 255])) for i in range(6))
    assert KinesisBridge.for_table("users", arn).pump() == 6
    shard = kinesis.list_shards(StreamARN=arn)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamARN=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it, StreamARN=arn)["Records"]  # moto needs the ARN here
    assert len(records) == 6
    return {"arn": arn, "shard": shard, "records": records}


def kinesis_on_failure(stream, first: int, last: int, *, start: str | None = None) -> dict:
    """The record Lambda sends to the on-failure destination of a Kinesis mapping."""
    seqs = [r["SequenceNumber"] for r in stream["records"]]
    return onfailure.build(
        onfailure.BatchInfo(shard_id=stream["shard"], start_sequence_number=start or seqs[first],
                            end_sequence_number=seqs[last], stream_arn=stream["arn"], batch_size=last - first + 1,
                            first_arrival="2026-11-22T09:59:00Z", last_arrival="2026-11-22T09:59:01Z",
                            source="kinesis"),
        function_arn=FN_ARN, condition="RetryAttemptsExhausted", invoke_count=4, function_error="Unhandled",
        at_epoch_s=1_795_000_000,
    )


def test_the_on_failure_record_of_a_kinesis_mapping_carries_kinesis_batch_info(kinesis_stream):
    body = kinesis_on_failure(kinesis_stream, 1, 3)
    assert "KinesisBatchInfo" in body and "DDBStreamBatchInfo" not in body
    msg = onfailure.parse(json.dumps(body))
    assert msg.batch.source == "kinesis" and msg.batch.stream_arn == kinesis_stream["arn"]
    assert onfailure.summarize(body)["source"] == "kinesis"


def test_kinesis_records_read_back_are_what_lambda_delivers(kinesis_stream):
    raw = kinesis_stream["records"][0]
    rec = kinesis_reader.to_lambda_record(raw, kinesis_stream["arn"], kinesis_stream["shard"])
    assert rec["eventSource"] == "aws:kinesis" and rec["eventName"] == "aws:kinesis:record"
    assert rec["eventID"] == f"{kinesis_stream['shard']}:{raw['SequenceNumber']}"
    assert rec["eventSourceARN"] == kinesis_stream["arn"] and rec["kinesis"]["sequenceNumber"] == raw["SequenceNumber"]
    json.dumps(rec)  # plain JSON, like Lambda's event
    change = sources.decode_data(rec["kinesis"]["data"])
    assert change["tableName"] == "users" and change["recordFormat"] == "application/json"
    assert change["eventSource"] == "aws:dynamodb" and change["eventName"] == "INSERT"
    assert change["dynamodb"]["ApproximateCreationDateTime"] > 10**15  # microseconds
    view = StreamRecord(rec)
    assert view.keys == {"user_id": "u0000"} and view.new_image["avatar"] == bytes([0, 255])
    assert view.sequence_number == raw["SequenceNumber"]


def test_a_kinesis_batch_info_range_is_resolved_and_drained_by_the_worker(kinesis_stream, index_table):
    failures, parking = create_consumer_queues("search-indexer")
    send_bodies(failures, [json.dumps(kinesis_on_failure(kinesis_stream, 1, 4))])
    seen = []

    def handler(record):
        seen.append(record)
        sample_consumers.index_v1(record)  # u0003 is v2 schema: fails

    s = drain("search-indexer", mode="replay", handle_record=handler, wait_time_s=0)
    assert (s.taken, s.stream_records, s.still_failing, s.parked) == (1, 4, 1, 0) and s.conserved
    seqs = [r["SequenceNumber"] for r in kinesis_stream["records"]]
    assert [r.sequence_number for r in seen] == seqs[1:5]
    assert all(r.source == "kinesis" and r.source_arn == kinesis_stream["arn"] for r in seen)
    assert set(index_items()) == {"u0001", "u0002", "u0004"}
    # The metadata became a real envelope for the failing record: the Kinesis record as Lambda
    # would have delivered it, so it outlives the stream's retention.
    (left,) = take_all(failures)
    env = left["body"]
    assert env["version"] == 1 and env["attempts"] == 2 and env["error"]["type"] == "KeyError"
    assert sources.source_of(env["record"]) == "kinesis" and sources.sequence_number_of(env["record"]) == seqs[3]
    assert sources.change_of(env["record"])["dynamodb"]["NewImage"]["firstname"] == {"S": "Ada"}
    assert queue_count(parking) == 0

    # After the fix the envelope drains like any other (latest mode: rebuilt inside kinesis.data).
    capture(failures, [env])
    s2 = drain("search-indexer", mode="latest", handle_record=sample_consumers.index_v2, wait_time_s=0)
    assert s2.succeeded == 1 and set(index_items()) == {"u0001", "u0002", "u0003", "u0004"}
    assert index_items()["u0003"]["event"] == "MODIFY"  # rebuilt from the table


def test_a_range_whose_start_aged_out_runs_the_survivors_in_latest_mode(kinesis_stream, index_table):
    """Kinesis hands out what it still has when the start is past retention: the records of
    the range that survive run in latest mode, and the lost ones are reported by count."""
    failures, parking = create_consumer_queues("search-indexer")
    boto3.resource("dynamodb").Table("users").put_item(Item=user_item(1, fullname="Renamed Since"))
    first_seq = int(kinesis_stream["records"][0]["SequenceNumber"])
    body = kinesis_on_failure(kinesis_stream, 0, 1, start=str(first_seq - 1))  # one record before what is kept
    body["KinesisBatchInfo"]["batchSize"] = 3
    send_bodies(failures, [json.dumps(body)])
    seen = []

    def handler(record):
        seen.append(record)
        sample_consumers.index_v2(record)

    s = drain("search-indexer", mode="replay", handle_record=handler, wait_time_s=0)
    assert [r.event_name for r in seen] == ["MODIFY", "MODIFY"]  # rebuilt from the table (latest)
    assert index_items()["u0001"]["name"] == "Renamed Since"
    assert s.parked == 1  # the message, with the count of what the stream lost
    (p,) = take_all(parking)
    assert "1 record(s) lost to the stream" in p["attributes"]["parkReason"]
    assert queue_count(failures) == 0


def test_a_deleted_kinesis_stream_parks_the_message_with_a_clear_reason(kinesis_stream, index_table):
    failures, parking = create_consumer_queues("search-indexer")
    body = json.dumps(kinesis_on_failure(kinesis_stream, 0, 5))
    send_bodies(failures, [body])
    boto3.client("kinesis").delete_stream(StreamARN=kinesis_stream["arn"])
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, wait_time_s=0)
    assert (s.taken, s.parked, s.exit_code) == (1, 1, 1)
    (p,) = take_all(parking)
    assert p["raw"] == body and "no longer readable" in p["attributes"]["parkReason"]
    assert queue_count(failures) == 0 and index_items() == {}
