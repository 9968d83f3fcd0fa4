"""The hard-fail backstop: Lambda's on-failure record for a stream -> the records.

When a stream function's retries run out (or records age out), the event source mapping's
on-failure destination gets only metadata (``streamkit.onfailure`` owns that format), never
the records. While the stream still holds the range (DynamoDB Streams: 24 h; Kinesis: its
retention, 7 days in our stack), the records are read back with ``GetShardIterator``
AT_SEQUENCE_NUMBER + ``GetRecords`` from the stream the message names: ``DDBStreamBatchInfo``
with ``stream_reader`` (the ``dynamodbstreams`` client), ``KinesisBatchInfo`` with
``kinesis_reader`` (the ``kinesis`` client). When the start has been trimmed, the records of
the range still in the shard are found from TRIM_HORIZON and run in ``latest`` mode (only
the current item state is trustworthy by then); what cannot be found is reported so the
message is parked with a clear reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from streamkit.onfailure import BatchInfo, OnFailureMessage

from . import kinesis_reader, stream_reader
from .stream_reader import StreamRangeUnavailable

# The boto3 service that reads each source's stream.
CLIENT_FOR_SOURCE = {"dynamodb": "dynamodbstreams", "kinesis": "kinesis"}
_READERS = {"dynamodb": stream_reader.read_range, "kinesis": kinesis_reader.read_range}


def client_service(message: OnFailureMessage) -> str:
    """Which boto3 client ``resolve`` needs for ``message`` (``dynamodbstreams``/``kinesis``)."""
    return CLIENT_FOR_SOURCE[message.batch.source]


@dataclass
class Resolution:
    """What the stream still holds for one on-failure message."""

    records: list[dict]
    expired: bool = False  # the start of the range was trimmed: run what survives in latest mode
    missing: int = 0  # records named by the message that could not be found
    reason: str | None = None


def resolve(message: OnFailureMessage, streams) -> Resolution:
    """The records named by ``message``: its own copy when the destination kept one (S3),
    else read back from the stream (``streams``: the ``client_service(message)`` client).
    Never raises for an expired range; any other failure to read (throttling, access
    denied, an outage) propagates."""
    if message.records is not None:
        return Resolution(list(message.records))
    info = message.batch
    read_range = _READERS[info.source]
    try:
        records = read_range(
            streams, info.stream_arn, info.shard_id, info.start_sequence_number, info.end_sequence_number
        )
        if records and _first_sequence(records) != int(info.start_sequence_number):
            # Kinesis hands out what it still has instead of refusing a trimmed start
            raise StreamRangeUnavailable(f"the range's first record {info.start_sequence_number} is gone")
        found = _missing(info, records)
        return Resolution(records, missing=found, reason=_missing_reason(info, found) if found else None)
    except StreamRangeUnavailable as exc:
        first = exc
    try:
        records = read_range(
            streams, info.stream_arn, info.shard_id, info.start_sequence_number, info.end_sequence_number,
            from_trim_horizon=True,
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


def _first_sequence(records: list[dict]) -> int:
    from streamkit.sources import sequence_number_of

    return min(int(sequence_number_of(r) or 0) for r in records)


def _missing(info: BatchInfo, records: list[dict]) -> int:
    if info.batch_size is None:
        return 0
    return max(0, info.batch_size - len(records))


def _missing_reason(info: BatchInfo, missing: int) -> str:
    return (
        f"{missing} of {info.batch_size} records of {info.start_sequence_number}.."
        f"{info.end_sequence_number} on {info.shard_id} were not found in the stream"
    )
