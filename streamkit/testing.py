"""Build Lambda-format DynamoDB stream events and a Lambda-like context.

For tests, benchmarks and the local emulator: the events are exactly what Lambda
delivers (contract 7), the context honours a real deadline.
"""
from __future__ import annotations

import itertools
import time
import uuid
from typing import Any, Iterable

from .ddbjson import serialize_image

DEFAULT_STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/2026-01-01T00:00:00.000"
)
_seq = itertools.count(100_000_000_000_000_000_000)


def make_record(
    event_name: str = "INSERT",
    *,
    keys: dict,
    new_image: dict | None = None,
    old_image: dict | None = None,
    sequence_number: str | None = None,
    event_id: str | None = None,
    created: int | None = None,
    source_arn: str = DEFAULT_STREAM_ARN,
) -> dict:
    """One record in Lambda's format. Images are plain dicts; they are serialized here."""
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
