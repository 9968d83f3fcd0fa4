"""The hard-fail backstop: Lambda's on-failure message for a DynamoDB stream -> the records.

When a stream function's retries run out (or records age out), the event source mapping's
on-failure destination gets only metadata, never the records:

    {"requestContext": {"requestId", "functionArn", "condition": "RetryAttemptsExhausted",
                        "approximateInvokeCount"},
     "responseContext": {"statusCode", "executedVersion", "functionError"},
     "version": "1.0", "timestamp": "...",
     "DDBStreamBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber",
                            "approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord",
                            "batchSize", "streamArn"}}

While the stream still holds the range (24 h), the records are read back with
``GetShardIterator`` AT_SEQUENCE_NUMBER + ``GetRecords``. When the start has been trimmed,
the records of the range still in the shard are found from TRIM_HORIZON and run in
``latest`` mode (only the current item state is trustworthy by then); what cannot be found
is reported so the message is parked with a clear reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stream_reader import StreamRangeUnavailable, read_range, surviving_in_range

BATCH_INFO_KEY = "DDBStreamBatchInfo"


class OnFailureMessageError(ValueError):
    """Looks like an on-failure message but cannot be used (missing fields); ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class BatchInfo:
    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    stream_arn: str
    batch_size: int | None = None
    first_arrival: str | None = None
    last_arrival: str | None = None
    function_arn: str | None = None
    condition: str | None = None
    invoke_count: int | None = None
    timestamp: str | None = None

    @property
    def function_name(self) -> str | None:
        if not self.function_arn:
            return None
        parts = self.function_arn.split(":")
        return parts[6] if len(parts) > 6 else self.function_arn


def is_on_failure_message(body: Any) -> bool:
    return isinstance(body, dict) and BATCH_INFO_KEY in body


def parse_on_failure(body: dict) -> BatchInfo:
    """Validate an on-failure message (already JSON-decoded)."""
    info = body.get(BATCH_INFO_KEY)
    if not isinstance(info, dict):
        raise OnFailureMessageError(f"{BATCH_INFO_KEY} is not an object")
    missing = [k for k in ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn") if not info.get(k)]
    if missing:
        raise OnFailureMessageError(f"{BATCH_INFO_KEY} lacks {', '.join(missing)}")
    for k in ("startSequenceNumber", "endSequenceNumber"):
        if not str(info[k]).isdigit():
            raise OnFailureMessageError(f"{BATCH_INFO_KEY}.{k} is not a sequence number: {info[k]!r}")
    ctx = body.get("requestContext") if isinstance(body.get("requestContext"), dict) else {}
    size = info.get("batchSize")
    count = ctx.get("approximateInvokeCount")
    return BatchInfo(
        shard_id=info["shardId"],
        start_sequence_number=str(info["startSequenceNumber"]),
        end_sequence_number=str(info["endSequenceNumber"]),
        stream_arn=info["streamArn"],
        batch_size=size if isinstance(size, int) else None,
        first_arrival=info.get("approximateArrivalOfFirstRecord"),
        last_arrival=info.get("approximateArrivalOfLastRecord"),
        function_arn=ctx.get("functionArn"),
        condition=ctx.get("condition"),
        invoke_count=count if isinstance(count, int) else None,
        timestamp=body.get("timestamp"),
    )


@dataclass
class Resolution:
    """What the stream still holds for one on-failure message."""

    records: list[dict]
    expired: bool = False  # the start of the range was trimmed: run what survives in latest mode
    missing: int = 0  # records named by the message that could not be found
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def resolve(info: BatchInfo, streams) -> Resolution:
    """Read the records named by ``info``; never raises for an expired range."""
    try:
        records = read_range(
            streams, info.stream_arn, info.shard_id, info.start_sequence_number, info.end_sequence_number
        )
        found = _missing(info, records)
        return Resolution(records, missing=found, reason=_missing_reason(info, found) if found else None)
    except StreamRangeUnavailable as exc:
        first = exc
    try:
        records = surviving_in_range(
            streams, info.stream_arn, info.shard_id, info.start_sequence_number, info.end_sequence_number
        )
    except StreamRangeUnavailable as exc:
        return Resolution(
            [],
            expired=True,
            missing=info.batch_size or 0,
            reason=(
                f"stream records {info.start_sequence_number}..{info.end_sequence_number} on "
                f"{info.shard_id} are no longer readable ({first.reason}; {exc.reason}); "
                "reconcile these keys from the table"
            ),
        )
    missing = _missing(info, records)
    reason = None
    if missing or not records:
        reason = (
            f"start of range {info.start_sequence_number} on {info.shard_id} was trimmed ({first.reason}); "
            f"{len(records)} surviving record(s) rerun in latest mode, "
            f"{missing if info.batch_size is not None else 'an unknown number of'} record(s) lost to the stream"
        )
    return Resolution(records, expired=True, missing=missing, reason=reason)


def _missing(info: BatchInfo, records: list[dict]) -> int:
    if info.batch_size is None:
        return 0
    return max(0, info.batch_size - len(records))


def _missing_reason(info: BatchInfo, missing: int) -> str:
    return (
        f"{missing} of {info.batch_size} records of {info.start_sequence_number}.."
        f"{info.end_sequence_number} on {info.shard_id} were not found in the stream"
    )
