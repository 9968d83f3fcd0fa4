"""Read DynamoDB stream records back with the Streams API, in Lambda's record format.

Two users: the reprocess worker's hard-fail backstop (re-reading the range named by a
Lambda on-failure message) and the local event-source-mapping emulator. Both need records
exactly as Lambda delivers them (contract 7), so the conversion lives here, once:

    from reprocess.stream_reader import to_lambda_record
    lambda_record = to_lambda_record(boto3_record, stream_arn)

What differs between ``dynamodbstreams.get_records`` (boto3) and a Lambda event record:
- Lambda adds ``eventSourceARN`` (the stream ARN) and says ``eventVersion`` "1.1";
- boto3 parses ``ApproximateCreationDateTime`` into a ``datetime``; Lambda sends whole
  epoch seconds as a number;
- boto3 hands binary attribute values (``B``, ``BS``) as ``bytes``; Lambda's JSON carries
  them base64-encoded;
- ``awsRegion`` is taken from the stream ARN (moto always says us-east-1).
``SizeBytes`` is kept as the Streams API reports it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any

from streamkit.awsclient import error_code
from streamkit.ddbjson import client_image_to_lambda

LAMBDA_EVENT_VERSION = "1.1"
_RECORD_FIELDS = ("eventID", "eventName", "eventVersion", "eventSource", "awsRegion")
_DDB_ORDER = (
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
)
GET_RECORDS_LIMIT = 1000
MAX_EMPTY_PAGES = 5


class StreamRangeUnavailable(Exception):
    """The records asked for cannot be read: trimmed (older than 24 h), shard or stream gone."""

    def __init__(self, reason: str, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _epoch_seconds(value: Any) -> int | float:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, (int, float)):
        return int(value)
    return value


def region_of(stream_arn: str) -> str | None:
    parts = stream_arn.split(":") if stream_arn else []
    return parts[3] if len(parts) > 3 and parts[3] else None


def to_lambda_record(boto3_record: dict, stream_arn: str) -> dict:
    """A record from ``dynamodbstreams.get_records`` -> the dict Lambda would deliver.

    Does not modify its argument. Works on boto3-parsed records (``datetime``, ``bytes``)
    and on raw JSON responses (numbers, base64 strings) alike.
    """
    out: dict[str, Any] = {k: boto3_record[k] for k in _RECORD_FIELDS if k in boto3_record}
    out["eventVersion"] = LAMBDA_EVENT_VERSION
    out.setdefault("eventSource", "aws:dynamodb")
    region = region_of(stream_arn)
    if region:
        out["awsRegion"] = region
    src = boto3_record.get("dynamodb") or {}
    ddb: dict[str, Any] = {}
    for key in _DDB_ORDER:
        if key not in src:
            continue
        value = src[key]
        if key == "ApproximateCreationDateTime":
            value = _epoch_seconds(value)
        elif key in ("Keys", "NewImage", "OldImage"):
            value = client_image_to_lambda(value)
        ddb[key] = value
    for key, value in src.items():  # anything newer the API adds, passed through
        if key not in ddb:
            ddb[key] = value
    out["dynamodb"] = ddb
    if "userIdentity" in boto3_record:  # TTL deletions carry it, Lambda passes it on
        out["userIdentity"] = boto3_record["userIdentity"]
    out["eventSourceARN"] = stream_arn
    return out


_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException", "ValidationException"}


def _iterator(streams, stream_arn: str, shard_id: str, kind: str, seq: str | None = None) -> str:
    kwargs = {"StreamArn": stream_arn, "ShardId": shard_id, "ShardIteratorType": kind}
    if seq is not None:
        kwargs["SequenceNumber"] = seq
    try:
        return streams.get_shard_iterator(**kwargs)["ShardIterator"]
    except Exception as exc:
        code = error_code(exc)
        if code in _GONE:
            raise StreamRangeUnavailable(
                f"{kind} {seq or ''} on {shard_id}: {code}: {exc}".replace("  ", " "), code
            ) from exc
        raise


def page_shard(
    first_iterator: str,
    get_records: Callable[[str], dict],
    renew: Callable[[str | None], str],
    sequence_of: Callable[[dict], str],
    *,
    shard_id: str,
    end_sequence_number: str | None,
    max_pages: int,
    gone: Collection[str],
    min_interval_s: float = 0.0,
    at_tip: Callable[[dict], bool] | None = None,
) -> Iterator[dict]:
    """The paging both sources share (``kinesis_reader`` too): ``GetRecords`` from
    ``first_iterator`` until ``end_sequence_number`` (inclusive), a closed shard's end,
    ``MAX_EMPTY_PAGES`` empty pages at the tip (or the first empty page ``at_tip`` says is
    at the tip, with no end given), or ``max_pages`` calls (always bounded). An expired
    iterator is renewed with ``renew(last sequence number seen)``; an error whose code is in
    ``gone`` raises ``StreamRangeUnavailable``. ``min_interval_s`` spaces the calls (a shard
    allows 5 ``GetRecords`` a second, shared with its other polling readers: a rewind's pace)."""
    end = int(end_sequence_number) if end_sequence_number is not None else None
    it = first_iterator
    last_seq: str | None = None
    empty = 0
    last_call = 0.0
    for _ in range(max_pages):
        if min_interval_s > 0:
            wait = last_call + min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last_call = time.monotonic()
        try:
            resp = get_records(it)
        except Exception as exc:
            code = error_code(exc)
            if code == "ExpiredIteratorException":
                it = renew(last_seq)
                continue
            if code in gone:
                raise StreamRangeUnavailable(f"GetRecords on {shard_id}: {code}: {exc}", code) from exc
            raise
        records = resp.get("Records") or []
        for rec in records:
            seq = sequence_of(rec)
            if end is not None and int(seq) > end:
                return
            last_seq = seq
            yield rec
            if end is not None and int(seq) == end:
                return
        next_it = resp.get("NextShardIterator")
        if not next_it:  # closed shard, fully read
            return
        it = next_it
        empty = 0 if records else empty + 1
        if empty >= MAX_EMPTY_PAGES:  # at the tip of an open shard: nothing more to come
            return
        if not records and end is None and at_tip is not None and at_tip(resp):
            return


def iter_shard(
    streams,
    stream_arn: str,
    shard_id: str,
    *,
    iterator_type: str = "AT_SEQUENCE_NUMBER",
    sequence_number: str | None = None,
    end_sequence_number: str | None = None,
    max_pages: int = 10_000,
    min_interval_s: float = 0.0,
) -> Iterator[dict]:
    """Yield boto3 records from a shard position until ``end_sequence_number`` (inclusive),
    the end of the available data, or ``max_pages`` ``GetRecords`` calls (always bounded).

    An expired iterator is renewed after the last record seen. Trimmed data, a missing
    shard or stream raise ``StreamRangeUnavailable``. ``min_interval_s``: ``page_shard``'s.
    """
    def renew(last_seq: str | None) -> str:
        if last_seq:
            return _iterator(streams, stream_arn, shard_id, "AFTER_SEQUENCE_NUMBER", last_seq)
        return _iterator(streams, stream_arn, shard_id, iterator_type, sequence_number)

    yield from page_shard(
        _iterator(streams, stream_arn, shard_id, iterator_type, sequence_number),
        lambda it: streams.get_records(ShardIterator=it, Limit=GET_RECORDS_LIMIT),
        renew,
        lambda rec: rec["dynamodb"]["SequenceNumber"],
        shard_id=shard_id, end_sequence_number=end_sequence_number, max_pages=max_pages, gone=_GONE,
        min_interval_s=min_interval_s,
    )


def read_range(
    streams,
    stream_arn: str,
    shard_id: str,
    start_sequence_number: str,
    end_sequence_number: str,
    *,
    from_trim_horizon: bool = False,
) -> list[dict]:
    """The Lambda-format records from ``start`` to ``end`` (inclusive) of one shard.

    ``from_trim_horizon``: the start of the range was trimmed, so read from the oldest record
    kept (``TRIM_HORIZON``) and return the records of the range that survive.
    """
    if from_trim_horizon:
        found = iter_shard(streams, stream_arn, shard_id, iterator_type="TRIM_HORIZON",
                           end_sequence_number=end_sequence_number)
    else:
        found = iter_shard(streams, stream_arn, shard_id, iterator_type="AT_SEQUENCE_NUMBER",
                           sequence_number=start_sequence_number, end_sequence_number=end_sequence_number)
    start = int(start_sequence_number)
    return [to_lambda_record(r, stream_arn) for r in found if int(r["dynamodb"]["SequenceNumber"]) >= start]
