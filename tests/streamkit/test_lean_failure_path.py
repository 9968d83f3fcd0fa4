"""The failure path costs what it must (issue 16): a dropped failure lets go of its frames at
once, a compact failure line is the same JSON a full ``write_line`` would write (whatever the
record's keys and the error message hold), and log timestamps are structlog's."""
from __future__ import annotations

import gc
import json
import weakref
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from streamkit import log, stream_handler
from streamkit.testing import LambdaContext

from .helpers import drop_sequence_number, edit_change, event_of, seqs, user_records


class Marker:
    """Something a failing handle_record holds in its frame (frames keep the event alive too)."""


def test_a_dropped_failure_frees_its_frames_before_the_next_record(quiet_env, source):
    markers: list[weakref.ref] = []
    alive_at_each_call: list[int] = []

    def handle_record(record):
        alive_at_each_call.append(sum(ref() is not None for ref in markers))
        marker = Marker()  # a local of the failing frame: its traceback keeps it alive
        markers.append(weakref.ref(marker))
        if "fullname" not in record.new_image:
            raise KeyError("fullname")

    handler = stream_handler("c", handle_record, policy="soft-fail", metrics=False)
    records = user_records(12, bad={1, 2, 5, 6, 7, 10}, source=source)
    gc.disable()  # freed by reference counting as each failure is dropped, not by a collection
    try:
        assert handler(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    finally:
        gc.enable()
    # When each record starts, no earlier record's frame is alive: not the handled ones, and not
    # the dropped ones (before, their tracebacks were held until the end of the batch).
    assert alive_at_each_call == [0] * 12
    last = handler.loop.last_batch
    assert (last.size, last.handled, last.dropped, len(last.reported)) == (12, 6, 6, 0)


def test_compact_lines_are_the_json_a_full_line_would_be(quiet_env, source, capsys):
    """Keys of every kind, messages with quotes, newlines, non-ASCII text and an email address,
    records without a sequence number: each compact line parses to exactly the fields of the
    full line, masked."""
    records = user_records(7, source=source)

    def odd_keys(change):
        change["dynamodb"]["Keys"] = {"user_id": {"S": "ü \"q\"\n"}, "score": {"N": "1.5"}, "n": {"N": "7"}}
    edit_change(records[3], odd_keys)
    drop_sequence_number(records[5])  # MalformedRecordError before handle_record: the first of its type
    drop_sequence_number(records[6])  # the second: compact, named by its keys
    messages = ["first", 'say "hi"\nthen ada@example.com é', "tab\there \\ back", "日本語", "x" * 400]

    calls: list[int] = []

    def handle_record(record):
        calls.append(1)
        raise ValueError(messages[len(calls) - 1])

    handler = stream_handler("c", handle_record, policy="soft-fail", metrics=False)
    assert handler(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    compact = [line for line in lines if "repeat" in line]
    assert [line["repeat"] for line in compact] == [2, 3, 4, 5, 2]
    for line in compact:
        assert set(line) == {"consumer", "policy", "aws_request_id", "event", "level", "error_type",
                             "sequence_number", "event_name", "event_id", "keys", "error", "repeat", "timestamp"}
        assert (line["consumer"], line["policy"], line["level"]) == ("c", "soft-fail", "error")
        assert line["event_name"] == "INSERT" and line["event_id"] and "exception" not in line
    assert [line["error_type"] for line in compact] == ["ValueError"] * 4 + ["MalformedRecordError"]
    assert [line["sequence_number"] for line in compact] == seqs(records)[1:5] + [None]
    assert compact[4]["keys"] == {"user_id": "u00006"}
    assert compact[0]["error"] == 'say "hi"\nthen a***@example.com é'  # masked, not the address
    assert compact[1]["error"] == "tab\there \\ back" and compact[2]["error"] == "日本語"
    assert compact[3]["error"] == "x" * 300 + "..."  # capped: a message may quote a record
    assert compact[2]["keys"] == {"user_id": 'ü "q"\n', "score": str(Decimal("1.5")), "n": 7}
    assert all(line["keys"]["user_id"] for line in compact)


@pytest.mark.parametrize("now", [1_764_451_200.0, 1_764_451_200.25, 1_764_451_200.123456,
                                 1_764_451_201.9999996, 1_764_451_262.5, 1_764_451_262.000001])
def test_log_timestamps_are_structlogs_iso_utc(monkeypatch, now):
    """What structlog's TimeStamper(fmt="iso", utc=True) writes, also across a second boundary
    (the date and time are formatted once per second and reused)."""
    monkeypatch.setattr(log.time, "time", lambda: now)
    expected = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    assert log.timestamp() == expected
    assert log.timestamp() == expected  # the cached second


def test_a_log_line_encodes_what_json_does(capsys):
    fields = {"d": Decimal("2.50"), "b": b"\x00", "s": {"x"}, "n": None, "f": 1.5, "t": True, "u": "é\n"}
    log.write_line({"consumer": "c"}, "error", "e", fields)
    line = json.loads(capsys.readouterr().out)
    assert line == {"consumer": "c", "event": "e", "d": "2.50", "b": str(b"\x00"), "s": str({"x"}), "n": None,
                    "f": 1.5, "t": True, "u": "é\n", "level": "error", "timestamp": line["timestamp"]}


class ReadTimeoutError(Exception):
    """botocore's name, recognised without importing botocore."""


def _flagged(exc: Exception, transient: bool) -> Exception:
    exc.transient = transient  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize("exc, transient", [
    (KeyError("fullname"), False), (ValueError("bad"), False), (TypeError("t"), False),
    (TimeoutError(), True), (ConnectionResetError(), True),  # builtins that are transient
    (_flagged(ValueError("x"), True), True),  # an explicit flag wins over the builtins shortcut
    (ReadTimeoutError(), True),
])
def test_permanent_builtin_errors_skip_the_name_checks_and_nothing_else(exc, transient):
    from streamkit import is_transient

    assert is_transient(exc) is transient


def test_a_permanent_error_is_not_retried_and_a_transient_one_is(quiet_env):
    """The loop asks is_transient before the retry machinery: a KeyError fails at once (one
    call), a TimeoutError is retried (MAX_RETRIES default) and then succeeds."""
    calls: dict[str, int] = {}

    def handle_record(record):
        uid = record.keys["user_id"]
        calls[uid] = calls.get(uid, 0) + 1
        if uid == "u00000":
            raise KeyError("fullname")
        if uid == "u00001" and calls[uid] == 1:
            raise TimeoutError("slow sink")

    handler = stream_handler("c", handle_record, policy="soft-fail", metrics=False)
    assert handler(event_of(user_records(2)), LambdaContext()) == {"batchItemFailures": []}
    assert calls == {"u00000": 1, "u00001": 2}
    last = handler.loop.last_batch
    assert (last.handled, last.dropped, last.retried) == (1, 1, 1)
