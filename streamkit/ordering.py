"""``change_order``: the one owner of the text that orders the changes of ONE item, on both sources.

Why a separate field: ``sequence_number`` is what ``batchItemFailures`` needs, and it orders
nothing across sources (a Kinesis sequence number says where a record landed in a Kinesis
shard, and Kinesis Data Streams for DynamoDB may deliver a change twice or two changes of one
item out of order). State-sync consumers keep, per item, the ``change_order`` of the last
change they applied and refuse anything not greater (``apply when incoming > stored``).

Layout (fixed width, so text order = change order)::

    "{micros:017d}.{tiebreak:040d}"      e.g. 01764430000000000.0000000000000000000123456789012345678901

* ``micros``: when DynamoDB made the change, in microseconds since the epoch, from
  ``dynamodb.ApproximateCreationDateTime``:
  - DynamoDB Streams (Lambda delivers whole epoch seconds; a fraction is floored so every
    reader of one change gets one value): precision **one second**;
  - Kinesis Data Streams for DynamoDB: the table's ``ApproximateCreationDateTimePrecision``,
    MICROSECOND in our stack (MILLISECOND is the default elsewhere). The unit is detected
    from the magnitude (seconds < 1e11 <= milliseconds < 1e14 <= microseconds).
* ``tiebreak``: on DynamoDB Streams the record's sequence number, zero-padded (it orders the
  changes of one item within one second: they share a shard); on Kinesis a constant 0, so
  duplicates of one change are equal. Two changes of one item in the same microsecond are
  therefore not distinguishable on Kinesis (the later one is taken for a duplicate): use
  MICROSECOND precision, never MILLISECOND, when one item changes more often than that.

Caveats: switching a live stack between sources mixes precisions for one item (a change read
from DynamoDB Streams is ordered to the second): changes of one item within the same second
around the switch may be ordered wrongly; run a backfill (``reprocess.py backfill``) after a
switch. ``order_floor``/``order_for_read_at`` give the bound a snapshot (a Scan made at time T)
takes so that every stream change made at or after T wins over it.

Imports nothing heavy: ``streamkit.record`` imports it on the hot path.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MICROS_DIGITS = 17  # enough until the year 5138
TIEBREAK_DIGITS = 40  # DynamoDB Streams sequence numbers have 21 to 40 digits
KINESIS_TIEBREAK = "0" * TIEBREAK_DIGITS
_MS_FROM = 10**11  # epoch values at or above this are milliseconds (seconds reach it in 5138)
_US_FROM = 10**14  # ... and at or above this, microseconds

# The creation-time precision of each source, in seconds (for order_for_read_at).
PRECISION_S = {"dynamodb": 1.0, "kinesis": 1e-6, "kinesis-millisecond": 1e-3}


class OrderError(ValueError):
    """A record that cannot be placed in order (no or an unreadable creation time)."""


def format_order(micros: int, tiebreak: str = KINESIS_TIEBREAK) -> str:
    """``(micros, tiebreak digits)`` -> the order text."""
    if micros < 0 or micros >= 10**MICROS_DIGITS:
        raise OrderError(f"creation time {micros} us is outside the orderable range")
    if len(tiebreak) > TIEBREAK_DIGITS or not tiebreak.isdigit():
        raise OrderError(f"tiebreak {tiebreak!r} is not a decimal number of at most {TIEBREAK_DIGITS} digits")
    return f"{micros:0{MICROS_DIGITS}d}.{tiebreak:0>{TIEBREAK_DIGITS}}"


def micros_from_creation(value: Any) -> int:
    """``ApproximateCreationDateTime`` in seconds, milliseconds or microseconds -> microseconds."""
    if isinstance(value, datetime):
        return _micros(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise OrderError(f"ApproximateCreationDateTime {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise OrderError(f"ApproximateCreationDateTime {value!r} is not a time")
    if isinstance(value, int):
        return value if value >= _US_FROM else value * 1000 if value >= _MS_FROM else value * 1_000_000
    scale = 1 if value >= _US_FROM else 1000 if value >= _MS_FROM else 1_000_000
    return int(round(value * scale))


_KINESIS_SUFFIX = "." + KINESIS_TIEBREAK


def dynamodb_order(created: Any, sequence_number: str) -> str:
    """The order of a DynamoDB Streams record: whole seconds, then its sequence number."""
    if (type(created) is int and 0 <= created < _MS_FROM and type(sequence_number) is str
            and len(sequence_number) <= TIEBREAK_DIGITS and sequence_number.isdigit()):
        # what Lambda delivers (whole epoch seconds): one format call, no unit detection
        return f"{created:011d}000000.{sequence_number:0>40}"
    if created is None:
        raise OrderError("the record has no dynamodb.ApproximateCreationDateTime")
    micros = micros_from_creation(created)
    return format_order(micros - micros % 1_000_000, sequence_number)


def kinesis_order(created: Any) -> str:
    """The order of a Kinesis Data Streams for DynamoDB record: its creation time alone."""
    if type(created) is int and _US_FROM <= created < 10**MICROS_DIGITS:  # MICROSECOND precision
        return f"{created:017d}{_KINESIS_SUFFIX}"
    if created is None:
        raise OrderError("the change record has no dynamodb.ApproximateCreationDateTime")
    return format_order(micros_from_creation(created))


def change_order_of(record: Any) -> str:
    """The ``change_order`` of a ``StreamRecord`` or of a raw record dict as Lambda delivers it."""
    from .record import StreamRecord

    view = record if isinstance(record, StreamRecord) else StreamRecord(record)
    return view.change_order


def _micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _bound(micros: int) -> str:
    if micros < 0 or micros >= 10**MICROS_DIGITS:
        raise OrderError(f"{micros} us since the epoch is outside the orderable range")
    return f"{micros:0{MICROS_DIGITS}d}"


def order_floor(at: datetime) -> str:
    """A bound strictly below the order of every change made at or after ``at`` (to the
    microsecond) and above every change made before it. No change has this value (it has no
    tiebreak), so a state stored with it loses to any such change, even an exact tie."""
    return _bound(_micros(at))


def order_for_read_at(at: datetime, precision_s: float) -> str:
    """The bound for a snapshot read at ``at`` (already minus any clock-skew allowance) on a
    source whose creation times have ``precision_s`` seconds (``PRECISION_S``): ``at``
    floored to that precision, so a change made at or after ``at`` (its time floored the
    same way) always orders above the snapshot."""
    step = max(1, int(round(precision_s * 1_000_000)))
    micros = _micros(at)
    return _bound(micros - micros % step)


def is_newer(incoming: str, stored: str | None) -> bool:
    """The guard every state-sync sink applies: ``incoming`` wins only when strictly greater
    (a duplicate of the stored change is not newer); nothing stored means anything wins."""
    return stored is None or incoming > stored
