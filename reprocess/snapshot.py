"""Ordering a read of an item's current state against the stream's changes of that item.

A backfill (a Scan page) and a rewind in ``latest`` mode (a consistent ``BatchGetItem``)
feed ``handle_record`` records built from the state an item had when it was read. State-sync
sinks apply a change only when its ``StreamRecord.change_order`` (``streamkit.ordering``) is
above the one they store. Such a record must therefore order:

* above every change made before the read, so it replaces what they wrote (a backfill
  repairs a mis-mapped index; a rewind re-applies state a buggy consumer wrote wrongly,
  though the guard has already seen those changes);
* below every change made at or after the read, so a racing change the stream consumer
  applies (before or after us) always wins.

``snapshot_stamp`` gives it the order for the read time minus the clock-skew allowance
(``BACKFILL_CLOCK_SKEW_MS``: our clock may run ahead of DynamoDB's) minus the creation-time
precision of the record's source (whole seconds on DynamoDB Streams, a microsecond on
Kinesis), as its ``ApproximateCreationDateTime``. Changes made within the allowance before the read then
order above the record too: their state is the one read, or newer, so this is harmless unless
such a change was applied wrongly (a rewind that follows a bug fix by less than the allowance).
``clock_offset_s`` measures how far our clock runs ahead from a response's ``Date`` header,
so a job refuses to start when the allowance does not cover it.
"""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from streamkit import sources
from streamkit.ordering import PRECISION_S, order_for_read_at
from streamkit.sources import DYNAMODB

from .job import JobError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def snapshot_stamp(read_at: float, clock_skew_s: float, source: str = DYNAMODB) -> int:
    """``ApproximateCreationDateTime`` for a state read at ``read_at``, in the unit of
    ``source``'s change records (whole seconds on DynamoDB Streams, microseconds on Kinesis):
    with any tiebreak its ``change_order`` is strictly below that of every change made at or
    after ``read_at - clock_skew_s``."""
    precision = PRECISION_S[source]
    # whole microseconds first: a float near 1.8e9 s cannot hold one microsecond less
    micros = math.floor(read_at * 1_000_000) - round((clock_skew_s + precision) * 1_000_000)
    at = EPOCH + timedelta(microseconds=micros)
    bound = int(order_for_read_at(at, precision))
    return bound // 1_000_000 if source == DYNAMODB else bound


def restamp(record: dict, read_at: float, clock_skew_s: float) -> dict:
    """``record`` (rebuilt from a read) ordered as that read: ``snapshot_stamp`` in its change."""
    source = sources.source_of(record) or DYNAMODB
    change = sources.change_of(record)
    if change is None:
        raise ValueError("not a DynamoDB Streams or Kinesis record")
    change = {**change, "dynamodb": {**(change.get("dynamodb") or {}),
                                     "ApproximateCreationDateTime": snapshot_stamp(read_at, clock_skew_s, source)}}
    return sources.with_change(record, change)


def clock_offset_s(response: dict, before: float, after: float) -> float | None:
    """How far this machine's clock is ahead of the server's, from the HTTP ``Date`` header of
    ``response`` (a boto3 response, sent between ``before`` and ``after``); ``None`` without one.
    The header has whole seconds, so the figure is good to about a second."""
    date = ((response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get("date")
    if not date:
        return None
    try:
        return round((before + after) / 2 - parsedate_to_datetime(date).timestamp(), 3)
    except (TypeError, ValueError):
        return None


DATE_RESOLUTION_S = 1.0  # an HTTP Date header has whole seconds


def check_clock(offset_s: float | None, clock_skew_s: float) -> None:
    """Refuse a job whose reads could be ordered after changes made after them: our clock is
    ahead of DynamoDB's by more than the allowance, beyond the Date header's resolution."""
    if offset_s is not None and offset_s - DATE_RESOLUTION_S > clock_skew_s:
        raise JobError(f"this machine's clock is {offset_s:.1f}s ahead of DynamoDB's, more than the "
                       f"{clock_skew_s:.1f}s allowed for ordering what a job reads against the stream: "
                       "sync the clock (NTP) or raise BACKFILL_CLOCK_SKEW_MS")


def describe_table(dynamodb: Any, table: str) -> tuple[dict, float | None]:
    """``DescribeTable``'s ``Table`` and our clock's offset from DynamoDB's."""
    import time

    before = time.time()
    resp = dynamodb.describe_table(TableName=table)
    return resp["Table"], clock_offset_s(resp, before, time.time())
