"""The shared helpers make what the suites rely on: tables as deployed, queues by the registry."""
from __future__ import annotations

import json

import boto3

from tests.support.aws import (
    create_consumer_queues,
    create_idempotency_table,
    create_users_table,
    queue_depth,
    stream_records,
    take_all,
)
from tests.support.users import put_users, user_item, user_record


def test_users_table_is_the_deployed_shape_and_its_stream_sees_writes(aws):
    arn = create_users_table("users")
    table = boto3.client("dynamodb").describe_table(TableName="users")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert put_users([user_item(1), user_item(2, v2=True)]) == ["u0001", "u0002"]
    records = stream_records(arn)
    assert [r["dynamodb"]["NewImage"]["user_id"]["S"] for r in records] == ["u0001", "u0002"]
    assert "fullname" in records[0]["dynamodb"]["NewImage"] and "lastname" in records[1]["dynamodb"]["NewImage"]
    assert create_users_table("plain", stream=False) == ""


def test_idempotency_table_has_the_deployed_ttl(aws):
    create_idempotency_table("idem")
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName="idem")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_consumer_queues_are_named_by_the_registry_and_redrive_to_parking(aws, monkeypatch):
    monkeypatch.delenv("STAGE", raising=False)
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    failures, parking = create_consumer_queues("crm-sync", redrive_max=3)
    assert failures.endswith("/userstream-dev-crm-sync-failures") and parking.endswith("/userstream-dev-crm-sync-parking")
    sqs = boto3.client("sqs")
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=failures, AttributeNames=["RedrivePolicy"])
                        ["Attributes"]["RedrivePolicy"])
    assert policy["maxReceiveCount"] == 3 and policy["deadLetterTargetArn"].endswith(":userstream-dev-crm-sync-parking")
    sqs.send_message(QueueUrl=failures, MessageBody=json.dumps(user_record("REMOVE", user_id="u9")))
    sqs.send_message(QueueUrl=failures, MessageBody="plain text")
    assert queue_depth(failures) == (2, 0)
    taken = take_all(failures)
    assert sorted(str(type(m["body"]).__name__) for m in taken) == ["dict", "str"]
    assert queue_depth(failures) == (0, 0)
