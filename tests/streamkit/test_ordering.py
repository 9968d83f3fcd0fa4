"""change_order: the contract others rely on (text order = change order, on both sources)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkit import MalformedRecordError, StreamRecord
from streamkit.ordering import (
    PRECISION_S,
    OrderError,
    change_order_of,
    is_newer,
    micros_from_creation,
    order_floor,
    order_for_read_at,
)
from streamkit.testing import make_record, redeliver

T = 1_764_000_000  # 2025-11-24T16:00:00Z


def record(source: str, at: float, seq: str | None = None, **kw) -> StreamRecord:
    return StreamRecord(make_record("MODIFY", keys={"user_id": "u1"}, new_image={"user_id": "u1"}, created=at,
                                    sequence_number=seq, source=source, **kw))


@pytest.mark.parametrize("value, micros", [
    (T, T * 10**6),                                  # DynamoDB Streams via Lambda: whole seconds
    (float(T), T * 10**6),
    (1_764_000_000.25, T * 10**6 + 250_000),
    (T * 1000 + 123, T * 10**6 + 123_000),           # Kinesis, MILLISECOND precision
    (T * 10**6 + 123_456, T * 10**6 + 123_456),      # Kinesis, MICROSECOND precision
    (str(T * 10**6 + 7), T * 10**6 + 7),
    (datetime.fromtimestamp(T, UTC) + timedelta(microseconds=5), T * 10**6 + 5),
])
def test_creation_time_unit_is_detected(value, micros):
    assert micros_from_creation(value) == micros


@pytest.mark.parametrize("bad", [None, "soon", -1, float("nan"), True, [T]])
def test_unreadable_creation_time_is_an_order_error(bad):
    with pytest.raises(OrderError):
        micros_from_creation(bad)


@settings(deadline=None)  # a loaded machine: no wall-clock limits in tests
@given(st.lists(st.tuples(st.integers(T - 10**6, T + 10**6), st.integers(10**20, 10**40 - 1)), min_size=2, max_size=20))
def test_text_order_is_time_then_sequence_number_on_dynamodb_streams(changes):
    orders = {(t, s): record("dynamodb", t, str(s)).change_order for t, s in changes}
    assert sorted(orders, key=orders.__getitem__) == sorted(orders)


@settings(deadline=None)
@given(st.lists(st.integers(T * 10**6, T * 10**6 + 10**12), min_size=2, max_size=20, unique=True))
def test_text_order_is_creation_microseconds_on_kinesis(micros):
    orders = {m: record("kinesis", m / 10**6).change_order for m in micros}
    assert sorted(orders, key=orders.__getitem__) == sorted(micros)


def test_dynamodb_streams_fraction_is_floored_so_every_reader_agrees():
    """Lambda sends whole seconds; a reader that sees milliseconds gets the same order."""
    assert record("dynamodb", T + 0.999, "123").change_order == record("dynamodb", T, "123").change_order


def test_duplicates_are_equal_and_not_newer():
    first = make_record("INSERT", keys={"user_id": "u1"}, new_image={"user_id": "u1"}, source="kinesis")
    copy = redeliver(first)
    assert change_order_of(first) == change_order_of(copy) == change_order_of(StreamRecord(copy))
    assert not is_newer(change_order_of(copy), change_order_of(first))
    assert is_newer(change_order_of(first), None)


def test_same_microsecond_on_kinesis_is_indistinguishable():
    """Documented limit: two changes of one item in one microsecond look like one change."""
    a, b = record("kinesis", T + 0.000001), record("kinesis", T + 0.000001)
    assert a.change_order == b.change_order and a.sequence_number != b.sequence_number


@pytest.mark.parametrize("source", ["dynamodb", "kinesis"])
def test_a_snapshot_bound_loses_to_every_change_made_at_or_after_its_time(source):
    read_at = datetime.fromtimestamp(T, UTC) + timedelta(milliseconds=400)
    bound = order_for_read_at(read_at, PRECISION_S[source])
    made_after = [record(source, read_at.timestamp() + d, str(10**20 + i)) for i, d in enumerate((0, 0.0001, 0.7, 5))]
    assert all(is_newer(r.change_order, bound) for r in made_after)
    # ... and wins over changes made before the floor of its time
    made_before = record(source, T - 1, str(10**39))
    assert not is_newer(made_before.change_order, bound)


def test_order_floor_and_precision():
    at = datetime(2025, 11, 24, 16, 0, 0, 123_456, tzinfo=UTC)
    assert order_floor(at) == f"{T * 10**6 + 123_456:017d}"
    assert order_for_read_at(at, 1.0) == f"{T * 10**6:017d}"
    assert order_for_read_at(at, 1e-3) == f"{T * 10**6 + 123_000:017d}"
    assert order_floor(at) < f"{T * 10**6 + 123_456:017d}." + "0" * 40  # below an exact tie


def test_malformed_order_inputs_are_malformed_records():
    with pytest.raises(MalformedRecordError, match="tiebreak"):
        _ = record("dynamodb", T, "12ab").change_order
    with pytest.raises(MalformedRecordError, match="at most 40 digits"):
        _ = record("dynamodb", T, "1" * 41).change_order
