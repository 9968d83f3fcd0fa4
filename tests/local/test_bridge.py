"""local.bridge: the table's changes reach the Kinesis stream as Kinesis Data Streams for
DynamoDB writes them (moto does not publish them itself)."""
from __future__ import annotations

from datetime import datetime

import boto3
import pytest

from local.bridge import KinesisBridge
from reprocess.kinesis_reader import to_lambda_record
from streamkit import StreamRecord, sources


@pytest.fixture
def table_and_stream(aws):
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName="users", KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST",
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="changes", ShardCount=2)
    return kinesis.describe_stream_summary(StreamName="changes")["StreamDescriptionSummary"]["StreamARN"]


def all_records(arn: str) -> list[dict]:
    kinesis = boto3.client("kinesis")
    out = []
    for shard in kinesis.list_shards(StreamARN=arn)["Shards"]:
        it = kinesis.get_shard_iterator(StreamARN=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        out += [to_lambda_record(r, arn, shard["ShardId"])
                for r in kinesis.get_records(ShardIterator=it, StreamARN=arn)["Records"]]
    return out


def test_each_change_once_in_the_documented_format_one_item_per_shard(table_and_stream):
    arn = table_and_stream
    table = boto3.resource("dynamodb").Table("users")
    bridge = KinesisBridge.for_table("users", arn)
    for i in range(4):
        table.put_item(Item={"user_id": f"u{i}", "plan": "free"})
    table.update_item(Key={"user_id": "u1"}, UpdateExpression="SET #p = :p", ExpressionAttributeNames={"#p": "plan"},
                      ExpressionAttributeValues={":p": "pro"})
    table.delete_item(Key={"user_id": "u2"})
    assert bridge.pump() == 6 and bridge.pump() == 0  # nothing is copied twice
    records = all_records(arn)
    assert len(records) == 6
    changes = [sources.decode_data(r["kinesis"]["data"]) for r in records]
    for change in changes:
        assert set(change) == {"awsRegion", "eventID", "eventName", "userIdentity", "recordFormat", "tableName",
                               "dynamodb", "eventSource"}
        assert change["tableName"] == "users" and change["eventSource"] == "aws:dynamodb"
        assert "SequenceNumber" not in change["dynamodb"] and "StreamViewType" not in change["dynamodb"]
    by_user: dict[str, list] = {}
    for r in records:
        view = StreamRecord(r)
        by_user.setdefault(view.keys["user_id"], []).append((r["eventID"].split(":")[0], view))
    # one item's changes share a shard (partition key: a hash of its key), in change order
    for views in by_user.values():
        assert len({shard for shard, _ in views}) == 1
    u1 = [v for _, v in by_user["u1"]]
    assert [v.event_name for v in u1] == ["INSERT", "MODIFY"] and u1[0].change_order < u1[1].change_order
    assert u1[1].old_image == {"user_id": "u1", "plan": "free"} and u1[1].new_image["plan"] == "pro"
    assert [v.event_name for _, v in by_user["u2"]] == ["INSERT", "REMOVE"]


def test_changes_of_one_item_in_one_millisecond_still_get_distinct_microseconds(table_and_stream):
    """moto stamps stream records to the millisecond; MICROSECOND precision on AWS tells two
    changes of one item apart, and so does the bridge."""
    arn = table_and_stream
    bridge = KinesisBridge.for_table("users", arn)
    when = {"ApproximateCreationDateTime": datetime(2026, 11, 29, 12, 0, 0, 1000)}
    assert bridge._created_us({"dynamodb": when}, "k") == bridge._created_us({"dynamodb": when}, "k") - 1
    assert bridge._created_us({"dynamodb": when}, "other") == 1_795_953_600_001_000


def test_a_table_without_a_dynamodb_stream_is_a_clear_error(aws):
    boto3.client("dynamodb").create_table(TableName="plain", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                                          AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                                          BillingMode="PAY_PER_REQUEST")
    with pytest.raises(ValueError, match="no DynamoDB stream"):
        KinesisBridge.for_table("plain", "arn:aws:kinesis:us-east-1:123456789012:stream/x")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_fault_settings_must_be_counts(table_and_stream, bad):
    with pytest.raises(ValueError, match="duplicate_every must be an integer >= 0"):
        KinesisBridge.for_table("users", table_and_stream, duplicate_every=bad)


def test_a_late_change_is_held_for_one_pump_and_written_behind_the_newer_ones(table_and_stream):
    arn = table_and_stream
    table = boto3.resource("dynamodb").Table("users")
    bridge = KinesisBridge.for_table("users", arn, late_every=2)  # every second change: late
    table.put_item(Item={"user_id": "u1", "plan": "free"})
    table.put_item(Item={"user_id": "u1", "plan": "pro"})
    assert bridge.pump() == 1 and bridge.pending == 1  # "pro" held: the emulator is not idle
    table.put_item(Item={"user_id": "u1", "plan": "team"})
    assert bridge.pump() == 2 and bridge.pending == 0  # "team", then the late "pro" behind it
    views = [StreamRecord(r) for r in all_records(arn)]
    assert [v.new_image["plan"] for v in views] == ["free", "team", "pro"]
    assert views[2].change_order < views[1].change_order and bridge.delayed == 1
