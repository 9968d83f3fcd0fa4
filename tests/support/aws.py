"""Tables and queues for tests, made on the embedded AWS the way the deployment makes them.

Table shapes (keys, stream, TTL) are read from serverless.yml, so a test table cannot drift
from the deployed one; queue names come from ``consumers.registry``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import boto3

from consumers.registry import get_consumer

SERVERLESS_YML = Path(__file__).resolve().parents[2] / "serverless.yml"


@functools.cache
def declared_table(logical_id: str) -> dict:
    """``resources.Resources.<logical_id>.Properties`` of serverless.yml."""
    import yaml

    resources = yaml.safe_load(SERVERLESS_YML.read_text())["resources"]["Resources"]
    return resources[logical_id]["Properties"]


def create_table(name: str, key: str = "user_id") -> str:
    """A pay-per-request table with a string hash key, for a test's own sink or index;
    returns its name."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _create_declared(logical_id: str, name: str, *, stream: bool = True) -> dict:
    props = declared_table(logical_id)
    params: dict[str, Any] = {k: props[k] for k in ("KeySchema", "AttributeDefinitions", "BillingMode",
                                                    "GlobalSecondaryIndexes") if k in props}
    if stream and "StreamSpecification" in props:
        params["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    ddb = boto3.client("dynamodb")
    desc = ddb.create_table(TableName=name, **params)["TableDescription"]
    if "TimeToLiveSpecification" in props:
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    return desc


def create_users_table(name: str = "users", *, stream: bool = True) -> str:
    """The users table as deployed (``UsersTable``); returns its stream ARN ("" with
    ``stream=False``, for tests that only read items, as latest-mode reprocessing does).
    Never attach an event-source mapping to a stream a test reads (LOCAL-AWS-NOTES)."""
    return _create_declared("UsersTable", name, stream=stream).get("LatestStreamArn", "")


def create_idempotency_table(name: str = "idempotency") -> str:
    """The idempotency table as deployed (``IdempotencyTable``: key ``id``, TTL)."""
    _create_declared("IdempotencyTable", name)
    return name


def create_circuit_table(name: str = "circuits") -> str:
    """The circuit breakers' table as deployed (``CircuitTable``: key ``consumer``)."""
    _create_declared("CircuitTable", name)
    return name


def create_ledger_table(name: str = "failure-ledger") -> str:
    """The failure ledger as deployed (``LedgerTable``: keys, the byState index, TTL)."""
    _create_declared("LedgerTable", name)
    return name


def stream_records(stream_arn: str) -> list[dict]:
    """Every record now in the stream's (one, on moto) shard, as DynamoDB Streams returns them."""
    streams = boto3.client("dynamodbstreams")
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    records: list[dict] = []
    for shard in shards:
        it = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records += streams.get_records(ShardIterator=it)["Records"]
    return records


def create_queue(name: str, attributes: dict[str, str] | None = None) -> tuple[str, str]:
    """(URL, ARN) of a new queue."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def create_consumer_queues(consumer: str, *, redrive_max: int | None = None) -> tuple[str, str]:
    """(failures URL, parking URL) of a registry consumer, named by the convention
    serverless.yml follows; ``redrive_max`` adds a redrive policy from failures to parking."""
    c = get_consumer(consumer)
    parking, parking_arn = create_queue(c.queue_name("parking"))
    attrs = {}
    if redrive_max is not None:
        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": parking_arn, "maxReceiveCount": redrive_max})
    failures, _ = create_queue(c.queue_name("failures"), attrs)
    return failures, parking


def queue_depth(queue_url: str) -> tuple[int, int]:
    """(visible, in flight): SQS's approximate counts, exact on moto."""
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def take_all(queue_url: str, *, max_rounds: int = 200) -> list[dict]:
    """Every message now visible in the queue, received and deleted:
    ``{"body": <parsed JSON, or the text>, "raw": <the text>, "attributes": {name: string value}}``."""
    sqs = boto3.client("sqs")
    out: list[dict] = []
    for _ in range(max_rounds):
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            try:
                body = json.loads(m["Body"])
            except ValueError:
                body = m["Body"]
            attrs = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
            out.append({"body": body, "raw": m["Body"], "attributes": attrs})
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        )
    raise AssertionError(f"{queue_url} never emptied in {max_rounds} receives")


def queue_count(queue_url: str) -> int:
    """Visible + in flight: every message the queue still holds."""
    return sum(queue_depth(queue_url))
