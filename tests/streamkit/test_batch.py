"""Batch owns the counting: custom policies only decide, and a policy that loses track of a
record (or books one twice) is caught by the conservation check, never silently."""
from __future__ import annotations

import json

import pytest

from streamkit import Decision, FailurePolicy, Settlement, stream_handler
from streamkit.batch import Batch, ConservationError
from streamkit.testing import LambdaContext

from .helpers import Recorder, event_of, reported, seqs, user_records


class DropEvenReportOdd(FailurePolicy):
    """A custom policy: drop failures at even positions, block the shard at odd ones."""

    name = "even-odd"

    def on_failure(self, failure):
        if failure.index % 2 == 0:
            return Decision.drop("even: dropped")
        return Decision.report("odd: blocks the shard")


class HoldsAndForgets(FailurePolicy):
    """Broken: takes custody of every failure and never settles any."""

    name = "holds-and-forgets"

    def on_failure(self, failure):
        return Decision.hold("held forever")


class SettlesTwice(FailurePolicy):
    """Broken: books each held failure as captured twice."""

    name = "settles-twice"

    def on_failure(self, failure):
        return Decision.hold("held")

    def settle(self, held, *, final, request_id):
        return [Settlement(f) for f in held] * 2 if final else ()


class ReturnsNothing(FailurePolicy):
    """Broken: written against the old API, returns None instead of a Decision."""

    name = "returns-nothing"

    def on_failure(self, failure):
        return None


def _errors(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"level": "error"' in line]


def test_custom_policy_decides_and_batch_counts(quiet_env):
    records = user_records(10, bad={2, 4, 7})
    rec = Recorder()
    h = stream_handler("c", rec, policy=DropEvenReportOdd(), metrics=False)
    resp = h(event_of(records), LambdaContext())
    b = h.loop.last_batch
    assert reported(resp) == seqs(records)[7:]  # 2 and 4 dropped, 7 blocks
    assert (b.handled, b.dropped, b.captured, len(b.reported), b.failed) == (5, 2, 0, 3, 3)
    assert b.reported == {7, 8, 9}
    assert b.tally() == {"in": 10, "handled": 5, "captured": 0, "reported": 3, "dropped": 2, "held": 0}
    b.check()  # in = handled + captured + reported + dropped


def test_a_policy_that_never_settles_loses_nothing(quiet_env, capsys):
    records = user_records(6, bad={1, 4})
    h = stream_handler("c", Recorder(), policy=HoldsAndForgets(), metrics=False)
    resp = h(event_of(records), LambdaContext())
    b = h.loop.last_batch
    # What the policy held and forgot goes back to Lambda: reported for retry, not lost.
    assert reported(resp) == [seqs(records)[1], seqs(records)[4]]
    assert (b.handled, b.captured, len(b.reported), b.dropped, b.held) == (4, 0, 2, 0, ())
    assert b.reported == {1, 4}
    b.check()
    lost = [e for e in _errors(capsys.readouterr().out) if "did not settle" in e["event"]]
    assert lost and lost[0]["policy"] == "holds-and-forgets" and lost[0]["records"] == 2


def test_a_policy_that_books_a_record_twice_fails_the_whole_batch(quiet_env, capsys):
    records = user_records(3, bad={1})
    h = stream_handler("c", Recorder(), policy=SettlesTwice(), metrics=False)
    with pytest.raises(ConservationError, match="settled twice, or never held"):
        h(event_of(records), LambdaContext())  # the batch fails: Lambda retries all of it


def test_a_policy_that_returns_no_decision_reports_the_record(quiet_env, capsys):
    records = user_records(5, bad={2})
    h = stream_handler("c", Recorder(), policy=ReturnsNothing(), metrics=False)
    assert reported(h(event_of(records), LambdaContext())) == seqs(records)[2:]
    assert h.loop.last_batch.reported == {2, 3, 4}
    h.loop.last_batch.check()
    assert any("returned no Decision" in e["event"] for e in _errors(capsys.readouterr().out))


def test_check_catches_counts_that_do_not_add_up():
    from streamkit.log import LazyLogger

    batch = Batch([{"dynamodb": {"SequenceNumber": str(i)}} for i in range(3)], LazyLogger())
    failure = batch.failure(1, ValueError("x"))
    batch.apply(failure, Decision.drop())
    batch.close(attempted=3, policy_name="p")
    assert batch.tally()["handled"] == 2
    batch.check()
    with pytest.raises(ConservationError):
        batch.settle([Settlement(failure)])  # never held
    broken = Batch([{}, {}], LazyLogger())
    with pytest.raises(ConservationError, match="records in 2 != out 1"):
        broken.close(attempted=1, policy_name="p")  # one record neither attempted nor reported
