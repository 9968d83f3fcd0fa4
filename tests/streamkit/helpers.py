"""Builders shared by the streamkit tests."""
from __future__ import annotations

from pathlib import Path

from streamkit import sources
from streamkit.testing import make_event
from tests.support.users import insert, user_item

ROOT = Path(__file__).resolve().parents[2]


def user_records(n: int, start: int = 0, *, bad: set[int] = frozenset(), source: str = "dynamodb") -> list[dict]:
    """``n`` INSERT records from ``source`` (``dynamodb`` or ``kinesis``); those whose index is
    in ``bad`` are v2 users (no ``fullname``: the schema change)."""
    return [insert(user_item(i, v2=i in bad, width=5, logins=i), source=source) for i in range(start, start + n)]


def event_of(records: list[dict]) -> dict:
    return make_event(records)


def seqs(records: list[dict]) -> list[str]:
    """What batchItemFailures names each record by, on either source."""
    return [sources.sequence_number_of(r) for r in records]


def edit_change(record: dict, edit) -> dict:
    """Apply ``edit(change)`` to the DynamoDB change a record carries (on Kinesis, inside its
    base64 ``data``); returns the record, changed in place."""
    if sources.source_of(record) == "kinesis":
        change = sources.decode_data(record["kinesis"]["data"])
        edit(change)
        record["kinesis"]["data"] = sources.encode_data(change)
    else:
        edit(record)
    return record


def drop_sequence_number(record: dict) -> dict:
    """The record without what identifies it to Lambda (``SequenceNumber``/``sequenceNumber``)."""
    if sources.source_of(record) == "kinesis":
        del record["kinesis"]["sequenceNumber"]
    else:
        del record["dynamodb"]["SequenceNumber"]
    return record


def reported(response: dict) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


class Recorder:
    """A consumer's handle_record that fails on records without ``fullname`` (v1 code)."""

    def __init__(self):
        self.calls: list[str] = []
        self.applied: list[str] = []

    def __call__(self, record) -> None:
        self.calls.append(record.sequence_number)
        name = record.new_image["fullname"]  # KeyError on the new schema
        self.applied.append(f"{record.keys['user_id']}={name}")


class FakeClock:
    """``time.monotonic`` for ``streamkit.deadline`` (the ``clock`` fixture installs it): time
    moves only when a test says so, e.g. a handler that "takes" one second per record."""

    def __init__(self, now: float = 1_000.0):
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def context(self, remaining_ms: int) -> ClockContext:
        return ClockContext(self, remaining_ms)


class ClockContext:
    """A Lambda context whose deadline is ``remaining_ms`` from now on a ``FakeClock``."""

    def __init__(self, clock: FakeClock, remaining_ms: int):
        self.clock = clock
        self.deadline = clock.now + remaining_ms / 1000
        self.aws_request_id = "req-clock"
        self.function_name = "fn"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock.now) * 1000))


def taking(seconds: float, clock: FakeClock, handle):
    """``handle`` as a handler that takes ``seconds`` on ``clock`` per record, failing or not."""

    def timed(record):
        try:
            return handle(record)
        finally:
            clock.advance(seconds)

    return timed
