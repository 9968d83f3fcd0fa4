"""Rewind on Kinesis Data Streams for DynamoDB (moto's Kinesis, fed by the local bridge from the
table's changes as AWS would): AT_TIMESTAMP, records placed by the change's own time (they
may arrive late), the stream's retention, lineages across splits and merges, latest mode
ordered in microseconds."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from local.bridge import KinesisBridge
from reprocess import rewind
from reprocess.checkpoints import FileStore
from reprocess.jobrun import run_job
from reprocess.options import RewindOptions
from streamkit import StreamRecord
from streamkit.ordering import kinesis_order
from tests.support.aws import create_consumer_queues, create_users_table

from .jobsupport import user_item


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def kinesis(env, monkeypatch, tmp_path):
    """The users table publishing its changes to a Kinesis stream (STREAM_ARN, as the plugin sets it)."""
    create_users_table("users")
    monkeypatch.setenv("USERS_TABLE", "users")
    create_consumer_queues("search-indexer")
    client = boto3.client("kinesis")
    client.create_stream(StreamName="users-changes", ShardCount=2)
    arn = client.describe_stream_summary(StreamName="users-changes")["StreamDescriptionSummary"]["StreamARN"]
    monkeypatch.setenv("STREAM_ARN", arn)
    table = boto3.resource("dynamodb").Table("users")
    return {"arn": arn, "client": client, "bridge": KinesisBridge.for_table("users", arn), "table": table,
            "store": FileStore(tmp_path / "jobs")}


def recorder(seen: list):
    lock = threading.Lock()

    def handle(record) -> None:
        with lock:
            seen.append(record)

    return handle


def test_a_kinesis_rewind_handles_exactly_the_changes_made_in_the_range(kinesis):
    """Every change reaches Kinesis after the range ended (the bridge copies them late, as a
    slow delivery would): they are placed by when they were made, not when they arrived."""
    table = kinesis["table"]
    for i in range(4):
        table.put_item(Item=user_item(i))  # before the range
    time.sleep(0.2)
    since = now()
    time.sleep(0.05)
    for i in range(4, 10):
        table.put_item(Item=user_item(i))
    time.sleep(1.1)
    table.delete_item(Key={"user_id": user_item(5)["user_id"]})
    time.sleep(0.05)
    until = now()
    time.sleep(0.2)
    for i in range(10, 13):
        table.put_item(Item=user_item(i))  # after the range
    assert kinesis["bridge"].pump() == 14
    seen: list = []
    summary = run_job(RewindOptions(consumer="search-indexer", since=since, until=until, window_s=1, mode="replay"),
                      store=kinesis["store"], handle_record=recorder(seen))
    assert summary["status"] == "succeeded" and summary["source"]["source"] == "kinesis", summary
    got = sorted((r.keys["user_id"], r.event_name) for r in seen)
    assert got == sorted([(user_item(i)["user_id"], "INSERT") for i in range(4, 10)]
                         + [(user_item(5)["user_id"], "REMOVE")])
    assert all(r.source == "kinesis" and r.source_arn == kinesis["arn"] for r in seen)
    five = [r.event_name for r in seen if r.keys["user_id"] == user_item(5)["user_id"]]
    assert five == ["INSERT", "REMOVE"]  # one item's changes in order (one shard: one lineage)
    # read from AT_TIMESTAMP since: the 4 changes made before it arrived after it (late), so
    # they are read and skipped by their own time, as are the 3 made after the range
    assert summary["taken"] == summary["handled"] == 7 and summary["skipped"] == 7
    assert summary["source"]["shards"] == 2 and summary["parts"] == 2


def test_a_kinesis_rewind_past_its_retention_is_refused(kinesis):
    with pytest.raises(rewind.RetentionError) as err:
        run_job(RewindOptions(consumer="search-indexer", since=now() - timedelta(hours=25)), store=kinesis["store"])
    assert "the Kinesis stream keeps records for 24 hours" in str(err.value)
    kinesis["client"].increase_stream_retention_period(StreamName="users-changes", RetentionPeriodHours=48)
    summary = run_job(RewindOptions(consumer="search-indexer", since=now() - timedelta(hours=25), mode="replay"),
                      store=kinesis["store"], handle_record=recorder([]))
    assert summary["status"] == "succeeded"


def test_a_kinesis_record_rebuilt_in_latest_mode_is_ordered_as_its_read_in_microseconds(kinesis):
    """On Kinesis the order is the change's microsecond: the rebuilt record orders below a
    change made just after the read (minus the allowance) and above one made before it."""
    from reprocess.snapshot import restamp

    kinesis["table"].put_item(Item=user_item(1))
    kinesis["bridge"].pump()
    shard = [s for s in kinesis["client"].list_shards(StreamARN=kinesis["arn"])["Shards"]]
    raws = []
    for s in shard:
        it = kinesis["client"].get_shard_iterator(StreamARN=kinesis["arn"], ShardId=s["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        raws += [(s["ShardId"], r) for r in kinesis["client"].get_records(ShardIterator=it, StreamARN=kinesis["arn"])["Records"]]
    (shard_id, raw), = raws
    record = rewind.SOURCES["kinesis"].to_lambda(raw, kinesis["arn"], shard_id)
    read_at, skew = time.time(), 2.0
    order = StreamRecord(restamp(record, read_at, skew)).change_order
    assert kinesis_order(int((read_at - skew) * 1_000_000)) > order  # a change at the read (minus allowance)
    assert kinesis_order(int((read_at - skew - 0.01) * 1_000_000)) < order  # an older one
    assert StreamRecord(record).sequence_number == raw["SequenceNumber"]  # the rest as it was


def test_lineages_follow_kinesis_splits_and_merges():
    shards = [
        {"ShardId": "a", "SequenceNumberRange": {"StartingSequenceNumber": "1"}},
        {"ShardId": "b", "SequenceNumberRange": {"StartingSequenceNumber": "2"}},
        {"ShardId": "a1", "ParentShardId": "a", "SequenceNumberRange": {"StartingSequenceNumber": "3"}},
        {"ShardId": "a2", "ParentShardId": "a", "SequenceNumberRange": {"StartingSequenceNumber": "4"}},
        {"ShardId": "m", "ParentShardId": "a2", "AdjacentParentShardId": "b",
         "SequenceNumberRange": {"StartingSequenceNumber": "5"}},
        {"ShardId": "c", "ParentShardId": "trimmed", "SequenceNumberRange": {"StartingSequenceNumber": "0"}},
    ]
    assert rewind.lineages(shards) == [["c"], ["a", "b", "a1", "a2", "m"]]
