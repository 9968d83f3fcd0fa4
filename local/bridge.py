"""Kinesis Data Streams for DynamoDB, emulated: each table change -> one Kinesis record.

On AWS the table publishes its changes to the Kinesis stream named by its
``KinesisStreamSpecification``. moto has Kinesis but does not do that, so the local runtime
reads the table's DynamoDB stream (moto has that) and writes each change to the Kinesis
stream in the documented Kinesis Data Streams for DynamoDB record format
(``streamkit.sources.change_record``: ``eventName``, ``dynamodb.Keys/NewImage/OldImage/
ApproximateCreationDateTime/SizeBytes``, ``tableName``, ``recordFormat``, ``userIdentity``),
partitioned by a hash of the item's key as DynamoDB does (one item's changes share a shard).

``ApproximateCreationDateTime`` is written in microseconds (the stack's MICROSECOND
precision). moto stamps its stream records to the millisecond, so a change of an item is
never given a time at or below that item's previous change: it gets one microsecond more
(what distinct real microseconds would give). Not emulated: the delay before a change appears.

Kinesis Data Streams for DynamoDB may deliver a change twice, and the changes of one item out
of order (AWS documents both); the bridge copies each change once and in order unless told
otherwise: ``duplicate_every=N`` writes every Nth change a second time, after the rest of that
pump, and ``late_every=N`` holds every Nth change back until the next pump, written after the
changes that pump copies (so behind newer changes of the same item, in the same shard; the
emulator is not idle while one is held). Tests and the chaos suite turn them on to check the
sinks' ``change_order`` guards end to end (tests/consumers/test_kinesis_delivery.py).

One bridge per (table, Kinesis stream); ``pump()`` moves what is new and returns how many
changes it wrote, so the mapping emulator can call it before each poll.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reprocess.stream_reader import to_lambda_record
from streamkit import sources
from streamkit.ordering import micros_from_creation

PUT_RECORDS_MAX = 500  # Kinesis PutRecords takes at most 500 records per call


def change_from_stream_record(boto3_record: dict, stream_arn: str, table_name: str, created_us: int) -> dict:
    """A ``dynamodbstreams.get_records`` record -> the change record Kinesis receives."""
    rec = to_lambda_record(boto3_record, stream_arn)  # images in Lambda's JSON (one converter)
    ddb = rec["dynamodb"]
    return sources.change_record(
        rec["eventName"],
        keys=ddb.get("Keys") or {},
        new_image=ddb.get("NewImage"),
        old_image=ddb.get("OldImage"),
        created_us=created_us,
        event_id=rec.get("eventID") or "",
        table_name=table_name,
        region=rec.get("awsRegion") or "us-east-1",
        size_bytes=ddb.get("SizeBytes"),
        user_identity=rec.get("userIdentity"),
    )


@dataclass
class KinesisBridge:
    """Copies a table's changes from its DynamoDB stream into a Kinesis stream."""

    table_name: str
    ddb_stream_arn: str
    kinesis_stream_arn: str
    streams: Any = None  # dynamodbstreams client
    kinesis: Any = None  # kinesis client
    duplicate_every: int = 0  # every Nth change is written twice (0: never)
    late_every: int = 0  # every Nth change is written after the rest of its pump (0: never)
    written: int = 0
    duplicated: int = 0
    delayed: int = 0
    _changes: int = 0  # changes read so far (what duplicate_every/late_every count)
    _held: list[dict] = field(default_factory=list)  # late changes: written at the end of the next pump
    _iterators: dict[str, str | None] = field(default_factory=dict)  # shard -> live iterator (None: closed)
    _last_us: dict[str, int] = field(default_factory=dict)  # item key -> last creation time given

    def __post_init__(self) -> None:
        import boto3

        self.streams = self.streams or boto3.client("dynamodbstreams")
        self.kinesis = self.kinesis or boto3.client("kinesis")
        for name in ("duplicate_every", "late_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"KinesisBridge {name} must be an integer >= 0 (0: off), got {value!r}")

    @classmethod
    def for_table(cls, table_name: str, kinesis_stream_arn: str, **clients: Any) -> KinesisBridge:
        """The bridge from ``table_name``'s DynamoDB stream (it must have one) to ``kinesis_stream_arn``."""
        import boto3

        table = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]
        arn = table.get("LatestStreamArn")
        if not arn:
            raise ValueError(f"table {table_name} has no DynamoDB stream: the local bridge reads it "
                             "(serverless.yml keeps StreamSpecification on the users table)")
        return cls(table_name, arn, kinesis_stream_arn, **clients)

    def _created_us(self, boto3_record: dict, key: str) -> int:
        micros = micros_from_creation(boto3_record["dynamodb"].get("ApproximateCreationDateTime") or datetime.now())
        micros = max(micros, self._last_us.get(key, -1) + 1)
        self._last_us[key] = micros
        return micros

    @property
    def pending(self) -> int:
        """Late changes held for the next pump (the emulator is not idle while there are any)."""
        return len(self._held)

    def pump(self) -> int:
        """Copy every change not copied yet; returns how many were written."""
        desc = self.streams.describe_stream(StreamArn=self.ddb_stream_arn)["StreamDescription"]
        entries: list[dict] = []
        behind, self._held = self._held, []  # the late changes held at the last pump, then second copies
        for shard in desc.get("Shards", []):
            sid = shard["ShardId"]
            if sid not in self._iterators:
                self._iterators[sid] = self.streams.get_shard_iterator(
                    StreamArn=self.ddb_stream_arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            it = self._iterators[sid]
            while it:  # until the tip of the shard (moto's iterators never expire)
                resp = self.streams.get_records(ShardIterator=it, Limit=1000)
                it = resp.get("NextShardIterator")
                self._iterators[sid] = it
                records = resp.get("Records") or []
                for raw in records:
                    change = change_from_stream_record(raw, self.ddb_stream_arn, self.table_name, 0)
                    key = json.dumps(change["dynamodb"]["Keys"], sort_keys=True)
                    change["dynamodb"]["ApproximateCreationDateTime"] = self._created_us(raw, key)
                    entry = {"Data": json.dumps(change, separators=(",", ":")).encode(),
                             "PartitionKey": sources.partition_key(change["dynamodb"]["Keys"])}
                    self._changes += 1
                    if self.late_every and self._changes % self.late_every == 0:
                        self._held.append(entry)
                        self.delayed += 1
                    else:
                        entries.append(entry)
                    if self.duplicate_every and self._changes % self.duplicate_every == 0:
                        behind.append(entry)
                        self.duplicated += 1
                if not records:
                    break
        entries += behind
        for i in range(0, len(entries), PUT_RECORDS_MAX):
            chunk = entries[i:i + PUT_RECORDS_MAX]
            resp = self.kinesis.put_records(StreamARN=self.kinesis_stream_arn, Records=chunk)
            if resp.get("FailedRecordCount"):  # moto never fails entries; AWS can (throttling)
                raise RuntimeError(f"Kinesis refused {resp['FailedRecordCount']} of {len(chunk)} records")
        self.written += len(entries)
        return len(entries)
