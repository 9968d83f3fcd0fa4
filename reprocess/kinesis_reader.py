"""Read a Kinesis shard range back with the Kinesis Data Streams API, in Lambda's record format.

The Kinesis twin of ``stream_reader`` (DynamoDB Streams): the reprocess worker resolves a
hard-fail ``KinesisBatchInfo`` with it while the stream's retention lasts (7 days in our
stack), and the local event-source-mapping emulator polls a stream with it. The record format
is ``streamkit.sources``' (one owner); this module only turns a ``kinesis.get_records`` record
into it:

- boto3 hands ``Data`` as bytes: Lambda sends it base64-encoded in ``kinesis.data``;
- ``ApproximateArrivalTimestamp`` is a ``datetime``: Lambda sends epoch seconds (a float);
- ``eventID`` is ``<shardId>:<sequenceNumber>``, ``eventSourceARN`` the stream's ARN.

GetShardIterator AT_SEQUENCE_NUMBER, then GetRecords until the end sequence number. Kinesis
sequence numbers are decimal text of up to 128 bits: compared as integers.
"""
from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from streamkit import sources
from streamkit.awsclient import error_code

from .stream_reader import StreamRangeUnavailable, page_shard

GET_RECORDS_LIMIT = 1000
# A range that cannot be read (deleted stream or shard, a sequence number Kinesis rejects).
_GONE = {"ResourceNotFoundException", "InvalidArgumentException"}


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if value is not None else 0.0


def to_lambda_record(boto3_record: dict, stream_arn: str, shard_id: str) -> dict:
    """A record from ``kinesis.get_records`` -> the dict Lambda would deliver (contract 7)."""
    data = boto3_record["Data"]
    text = data if isinstance(data, str) else base64.b64encode(bytes(data)).decode()
    return sources.kinesis_record(
        data=text,
        sequence_number=boto3_record["SequenceNumber"],
        shard_id=shard_id,
        stream_arn=stream_arn,
        partition_key=boto3_record.get("PartitionKey", ""),
        arrival_s=_epoch(boto3_record.get("ApproximateArrivalTimestamp")),
    )


def iterator(kinesis, stream_arn: str, shard_id: str, kind: str, seq: str | None = None,
             timestamp: datetime | None = None) -> str:
    """A shard iterator (``AT_TIMESTAMP`` takes ``timestamp``); ``StreamRangeUnavailable``
    when the stream, shard or position is gone."""
    kwargs: dict[str, Any] = {"StreamARN": stream_arn, "ShardId": shard_id, "ShardIteratorType": kind}
    if seq is not None:
        kwargs["StartingSequenceNumber"] = seq
    if timestamp is not None:
        kwargs["Timestamp"] = timestamp
    try:
        return kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
    except Exception as exc:
        code = error_code(exc)
        if code in _GONE:
            raise StreamRangeUnavailable(f"{kind} {seq or ''} on {shard_id}: {code}: {exc}".replace("  ", " "),
                                         code) from exc
        raise


def iter_shard(
    kinesis,
    stream_arn: str,
    shard_id: str,
    *,
    iterator_type: str = "AT_SEQUENCE_NUMBER",
    sequence_number: str | None = None,
    end_sequence_number: str | None = None,
    max_pages: int = 10_000,
    timestamp: datetime | None = None,
    min_interval_s: float = 0.0,
) -> Iterator[dict]:
    """Yield boto3 records from a shard position until ``end_sequence_number`` (inclusive),
    the tip of the shard (an empty page with ``MillisBehindLatest`` 0), or ``max_pages``
    ``GetRecords`` calls (``stream_reader.page_shard``, the paging both sources share). An
    expired iterator is renewed after the last record seen. ``timestamp`` goes with
    ``AT_TIMESTAMP`` (a rewind); ``min_interval_s`` spaces the calls (``page_shard``'s)."""
    def renew(last_seq: str | None) -> str:
        if last_seq:
            return iterator(kinesis, stream_arn, shard_id, "AFTER_SEQUENCE_NUMBER", last_seq)
        return iterator(kinesis, stream_arn, shard_id, iterator_type, sequence_number, timestamp)

    yield from page_shard(
        iterator(kinesis, stream_arn, shard_id, iterator_type, sequence_number, timestamp),
        lambda it: kinesis.get_records(ShardIterator=it, Limit=GET_RECORDS_LIMIT, StreamARN=stream_arn),
        renew,
        lambda rec: rec["SequenceNumber"],
        shard_id=shard_id, end_sequence_number=end_sequence_number, max_pages=max_pages, gone=_GONE,
        min_interval_s=min_interval_s, at_tip=lambda resp: resp.get("MillisBehindLatest") == 0,
    )


def read_range(
    kinesis,
    stream_arn: str,
    shard_id: str,
    start_sequence_number: str,
    end_sequence_number: str,
    *,
    from_trim_horizon: bool = False,
) -> list[dict]:
    """The Lambda-format records from ``start`` to ``end`` (inclusive) of one shard.

    ``from_trim_horizon``: the start may have aged out of the retention period, so read from
    the oldest record kept and return the records of the range that survive.
    """
    if from_trim_horizon:
        found = iter_shard(kinesis, stream_arn, shard_id, iterator_type="TRIM_HORIZON",
                           end_sequence_number=end_sequence_number)
    else:
        found = iter_shard(kinesis, stream_arn, shard_id, iterator_type="AT_SEQUENCE_NUMBER",
                           sequence_number=start_sequence_number, end_sequence_number=end_sequence_number)
    start = int(start_sequence_number)
    return [to_lambda_record(r, stream_arn, shard_id) for r in found if int(r["SequenceNumber"]) >= start]
