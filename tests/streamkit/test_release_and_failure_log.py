"""Nothing of an invocation outlives it, and the failure path logs what a person needs once:
the first failure of each error type with its traceback, every other one compactly (always
identifiable), and a summary line of counts by error type at the end of the batch."""
from __future__ import annotations

import gc
import json
import weakref

import pytest

from streamkit import stream_handler
from streamkit.testing import LambdaContext
from tests.support.aws import take_all

from .helpers import Recorder, event_of, seqs, user_records


class Event(dict):
    """A dict that can be weakly referenced (plain dicts cannot), like the event Lambda passes."""


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' not in line]


class TwoKindsOfFailure(Recorder):
    """KeyError on records without ``fullname`` (Recorder), ValueError on users listed here."""

    def __init__(self, value_errors: set[str]):
        super().__init__()
        self.value_errors = value_errors

    def __call__(self, record) -> None:
        if record.keys["user_id"] in self.value_errors:
            raise ValueError(f"plan {record.new_image['plan']!r} is not allowed for {record.keys['user_id']}")
        super().__call__(record)


@pytest.mark.parametrize("policy", ["soft-fail", "hard-fail", "dlq-capture"])
@pytest.mark.parametrize("bad", [set(), {1, 3, 4}])
def test_the_event_is_freed_when_the_handler_returns(quiet_env, queue_url, monkeypatch, policy, bad, source):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    handler = stream_handler("c", Recorder(), policy=policy)
    handler(event_of(user_records(3, bad={1}, source=source)), LambdaContext())  # warm: clients, caches
    event = Event(Records=[Event(r) for r in user_records(6, bad=bad, source=source)])
    refs = [weakref.ref(event)] + [weakref.ref(r) for r in event["Records"]]
    gc.disable()  # freed by reference counting when the call returns, not by a later collection
    try:
        response = handler(event, LambdaContext())
        del event
        alive = sum(ref() is not None for ref in refs)
    finally:
        gc.enable()
    assert alive == 0
    last = handler.loop.last_batch  # counts survive for tests and the local runtime
    assert last.size == 6 and last.failed == (len(bad) if policy != "hard-fail" else min(1, len(bad)))
    assert isinstance(response["batchItemFailures"], list)


def test_soft_fail_logs_each_error_type_once_with_its_traceback_and_every_drop(quiet_env, capsys):
    records = user_records(40, bad={2, 5, 9, 17, 30})  # KeyError: no fullname
    value_errors = {"u00003", "u00011", "u00012", "u00039"}
    handler = stream_handler("slack-notifier", TwoKindsOfFailure(value_errors), policy="soft-fail")
    assert handler(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    lines = _lines(capsys.readouterr().out)
    dropped = {seqs(records)[i] for i in (2, 5, 9, 17, 30)} | {
        seqs(records)[int(u[1:])] for u in value_errors}
    per_record = [line for line in lines if "sequence_number" in line and "failed_by_type" not in line]
    # Every dropped record is identifiable from exactly one line: its log is its only trace.
    assert sorted(line["sequence_number"] for line in per_record) == sorted(dropped)
    for line in per_record:
        assert line["keys"]["user_id"] and line["event_id"] and line["event_name"] == "INSERT"
        assert line["error_type"] in ("KeyError", "ValueError") and line["error"]
        assert line["consumer"] == "slack-notifier" and line["policy"] == "soft-fail" and line["level"] == "error"
    # The first of each type carries the traceback; every further one is compact.
    with_tb = [line for line in per_record if "exception" in line]
    assert [(line["error_type"], line["sequence_number"]) for line in with_tb] == [
        ("KeyError", seqs(records)[2]), ("ValueError", seqs(records)[3])]
    assert all("Traceback (most recent call last)" in line["exception"] for line in with_tb)
    assert with_tb[0]["exception"].rstrip().endswith("KeyError: 'fullname'")
    # Never a record body in any line (emails, names and plans live only in the images).
    text = json.dumps(lines)
    assert "@example.com" not in text and "Ada Number" not in text
    # One summary line ends the batch.
    summary = lines[-1]
    assert summary["event"] == "batch finished with failures"
    assert summary["failed_by_type"] == {"KeyError": 5, "ValueError": 4}
    assert (summary["in"], summary["handled"], summary["dropped"], summary["reported"]) == (40, 31, 9, 0)
    assert sum("failed_by_type" in line for line in lines) == 1


def test_a_healthy_batch_logs_nothing(quiet_env, capsys):
    handler = stream_handler("c", Recorder(), policy="soft-fail", metrics=False)
    handler(event_of(user_records(20)), LambdaContext())
    assert capsys.readouterr().out == ""


def test_hard_fail_logs_the_blocking_record_with_its_traceback(quiet_env, capsys):
    records = user_records(8, bad={3, 6})
    handler = stream_handler("crm-sync", Recorder(), policy="hard-fail")
    resp = handler(event_of(records), LambdaContext())
    assert resp == {"batchItemFailures": [{"itemIdentifier": s} for s in seqs(records)[3:]]}
    lines = _lines(capsys.readouterr().out)
    (blocking,) = [line for line in lines if "sequence_number" in line]
    assert blocking["sequence_number"] == seqs(records)[3] and "exception" in blocking
    assert lines[-1]["failed_by_type"] == {"KeyError": 1} and lines[-1]["reported"] == 5


def test_the_envelope_and_the_log_share_one_traceback(quiet_env, queue_url, monkeypatch, capsys):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(12, bad={1, 7})
    handler = stream_handler("search-indexer", Recorder(), policy="dlq-capture")
    assert handler(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    lines = _lines(capsys.readouterr().out)
    first = next(line for line in lines if "exception" in line)
    envelopes = {m["body"]["record"]["dynamodb"]["SequenceNumber"]: m["body"] for m in take_all(queue_url)}
    assert set(envelopes) == {seqs(records)[1], seqs(records)[7]}
    error = envelopes[first["sequence_number"]]["error"]
    assert error["traceback"] == first["exception"] and error["type"] == "KeyError"
    # compact: one line per frame, no source lines or ^^^ markers
    assert "^^^" not in error["traceback"] and "super().__call__" not in error["traceback"]
    assert envelopes[seqs(records)[7]]["error"]["traceback"].startswith("Traceback (most recent call last)")
