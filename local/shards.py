"""How the mapping emulator reads a stream, per source: shards, iterators, records in Lambda's format.

* ``dynamodb``: the table's DynamoDB stream (``dynamodbstreams``); records through
  ``reprocess.stream_reader.to_lambda_record``; a record's age is its
  ``ApproximateCreationDateTime`` (as precise as moto gives it).
* ``kinesis``: a Kinesis stream (``kinesis``); records through
  ``reprocess.kinesis_reader.to_lambda_record``; a record's age is its arrival in the stream
  (``ApproximateArrivalTimestamp``), which is what Lambda's MaximumRecordAgeInSeconds measures
  on Kinesis. A mapping on an enhanced fan-out consumer reads the consumer's stream: moto has
  no SubscribeToShard (HTTP/2 push), so each mapping polls with its own iterator, which is
  what a dedicated consumer amounts to here (no mapping's reads slow another's).

Both converters are the ones the reprocess worker uses, so what a function gets locally is
what the worker reads back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reprocess import kinesis_reader
from reprocess.stream_reader import to_lambda_record

GET_RECORDS_LIMIT = 1000


@dataclass
class Read:
    """One record read: Lambda's format, what identifies it, when it counts from."""

    record: dict
    seq: str
    created_s: float


def _epoch(value: Any, default: float) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return default


class DynamoDBStreamShards:
    source = "dynamodb"

    def __init__(self, client: Any, stream_arn: str):
        self.client, self.stream_arn = client, stream_arn

    def shard_ids(self) -> list[str]:
        desc = self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [s["ShardId"] for s in desc.get("Shards", [])]

    def iterator(self, shard_id: str, kind: str) -> str:
        return self.client.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id,
                                              ShardIteratorType=kind)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, now: float) -> tuple[list[Read], str | None]:
        resp = self.client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        out = []
        for raw in resp.get("Records", []):
            rec = to_lambda_record(raw, self.stream_arn)
            created = raw.get("dynamodb", {}).get("ApproximateCreationDateTime")
            out.append(Read(rec, rec["dynamodb"]["SequenceNumber"], _epoch(created, now)))
        return out, resp.get("NextShardIterator")


class KinesisShards:
    source = "kinesis"

    def __init__(self, client: Any, stream_arn: str):
        self.client, self.stream_arn = client, stream_arn

    def shard_ids(self) -> list[str]:
        return [s["ShardId"] for s in self.client.list_shards(StreamARN=self.stream_arn).get("Shards", [])]

    def iterator(self, shard_id: str, kind: str) -> str:
        return self.client.get_shard_iterator(StreamARN=self.stream_arn, ShardId=shard_id,
                                              ShardIteratorType=kind)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, now: float) -> tuple[list[Read], str | None]:
        resp = self.client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT, StreamARN=self.stream_arn)
        out = []
        for raw in resp.get("Records", []):
            rec = kinesis_reader.to_lambda_record(raw, self.stream_arn, shard_id)
            out.append(Read(rec, raw["SequenceNumber"], _epoch(raw.get("ApproximateArrivalTimestamp"), now)))
        return out, resp.get("NextShardIterator")


def stream_of_consumer(arn: str) -> str:
    """``arn:aws:kinesis:r:a:stream/NAME/consumer/C:1700000000`` -> the stream's ARN."""
    return arn.split("/consumer/", 1)[0]
