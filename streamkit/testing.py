"""Build Lambda-format stream events (DynamoDB Streams or Kinesis Data Streams for DynamoDB)
and a Lambda-like context.

For tests, benchmarks and the local emulator: the events are exactly what Lambda
delivers (contract 7), the context honours a real deadline. ``make_record(...,
source="kinesis")`` builds the same change as Lambda's Kinesis record (``streamkit.sources``
owns that format), so a test can run on both sources with one parameter.
"""
from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable
from typing import Any

from . import sources
from .ddbjson import serialize_image

DEFAULT_STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/2026-01-01T00:00:00.000"
)
DEFAULT_KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/users-changes"
DEFAULT_SHARD_ID = "shardId-000000000000"
_seq = itertools.count(100_000_000_000_000_000_000)
_kinesis_seq = itertools.count(49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898)
_last_us = 0


def _now_us() -> int:
    """Microseconds now, strictly increasing in this process (two changes built in one
    microsecond would otherwise look like duplicates of one change on Kinesis)."""
    global _last_us
    _last_us = max(time.time_ns() // 1000, _last_us + 1)
    return _last_us


def make_record(
    event_name: str = "INSERT",
    *,
    keys: dict,
    new_image: dict | None = None,
    old_image: dict | None = None,
    sequence_number: str | None = None,
    event_id: str | None = None,
    created: float | None = None,
    source_arn: str | None = None,
    source: str = "dynamodb",
    table_name: str = "users",
) -> dict:
    """One record in Lambda's format. Images are plain dicts; they are serialized here.

    ``source="kinesis"``: Lambda's Kinesis record around the change (``created`` in epoch
    seconds becomes microseconds; ``sequence_number`` and ``source_arn`` are then the Kinesis
    ones); the default is a DynamoDB Streams record (``created`` in whole seconds)."""
    if source == "kinesis":
        created_us = int(round(created * 1_000_000)) if created is not None else _now_us()
        change = sources.change_record(
            event_name, keys=serialize_image(keys) or {}, new_image=serialize_image(new_image),
            old_image=serialize_image(old_image),
            created_us=created_us, event_id=event_id or uuid.uuid4().hex, table_name=table_name,
        )
        return sources.kinesis_record(
            change, sequence_number=sequence_number or str(next(_kinesis_seq)), shard_id=DEFAULT_SHARD_ID,
            stream_arn=source_arn or DEFAULT_KINESIS_ARN, partition_key=sources.partition_key(change["dynamodb"]["Keys"]),
            arrival_s=created_us / 1_000_000,
        )
    if source != "dynamodb":
        raise ValueError(f"source must be 'dynamodb' or 'kinesis', not {source!r}")
    source_arn = source_arn or DEFAULT_STREAM_ARN
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": int(created if created is not None else time.time()),
        "Keys": serialize_image(keys),
        "SequenceNumber": sequence_number or str(next(_seq)),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new_image is not None:
        ddb["NewImage"] = serialize_image(new_image)
    if old_image is not None:
        ddb["OldImage"] = serialize_image(old_image)
    ddb["SizeBytes"] = len(repr(ddb))
    return {
        "eventID": event_id or uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": source_arn.split(":")[3],
        "dynamodb": ddb,
        "eventSourceARN": source_arn,
    }


def make_event(records: Iterable[dict]) -> dict:
    return {"Records": list(records)}


def redeliver(record: dict, sequence_number: str | None = None) -> dict:
    """The same change delivered again, as Kinesis Data Streams for DynamoDB may do: a new
    Kinesis record (its own sequence number) around an identical ``data``."""
    if sources.source_of(record) != "kinesis":
        raise ValueError("only Kinesis records are delivered twice with new sequence numbers")
    kin = record["kinesis"]
    seq = sequence_number or str(next(_kinesis_seq))
    shard = record.get("eventID", DEFAULT_SHARD_ID).split(":", 1)[0]
    return {**record, "kinesis": {**kin, "sequenceNumber": seq}, "eventID": f"{shard}:{seq}"}


class LambdaContext:
    """The parts of Lambda's context object that handlers use, with a real deadline."""

    def __init__(
        self,
        timeout_s: float = 60.0,
        function_name: str = "local-function",
        memory_limit_in_mb: int = 1024,
        aws_request_id: str | None = None,
    ):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
