"""Issue 14, item 4: no invocation runs past its deadline because a sink was slow.

The stream loop stops ``DEADLINE_MARGIN_MS`` plus the consumer's slowest sink call (from its
client timeouts: ``slowest_call_s`` of the consumer module) before the deadline, so a record
or a retry starts only when even a hanging sink lets it end in time. Against the real fake
CRM, hanging: the outcome is asserted (what reached the CRM, what was reported for retry),
never how long anything took.
"""
from __future__ import annotations

import consumers.crm_sync as cs
from consumers.registry import get_consumer
from streamkit.testing import make_event

from .conftest import rec, v1_user

TIMEOUT_S = 0.5  # CRM_TIMEOUT_S: connect at most 0.5 s, read 0.5 s; a REMOVE makes two requests
SLOWEST_S = 2 * (TIMEOUT_S + TIMEOUT_S)
MARGIN_S = 2.0  # DEADLINE_MARGIN_MS's default


class Remaining:
    """A Lambda context with a fixed remaining time when the batch starts."""

    aws_request_id = "req-deadline"
    function_name = "crm-sync"

    def __init__(self, seconds: float):
        self.ms = int(seconds * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return self.ms


def _handler(monkeypatch):
    monkeypatch.setenv("CRM_TIMEOUT_S", str(TIMEOUT_S))
    return get_consumer("crm-sync").handler(policy="hard-fail")  # as serverless.yml


def _records(n: int) -> list[dict]:
    return [rec("INSERT", v1_user(i), seq=f"{100 + i}") for i in range(1, n + 1)]


def test_the_margin_covers_the_slowest_crm_record(crm, monkeypatch):
    handler = _handler(monkeypatch)
    assert cs.slowest_call_s() == SLOWEST_S
    assert handler.loop.settings.margin_ms == int((MARGIN_S + SLOWEST_S) * 1000)


def test_no_record_starts_when_a_hanging_crm_could_not_answer_in_time(crm, monkeypatch):
    """Time for the 2 s wrap-up and a bit more, but not for one CRM record at its timeouts:
    nothing is sent, everything is reported for retry (with the old 2 s margin the first
    upsert went out and the invocation ran into Lambda's timeout while the CRM hung)."""
    handler = _handler(monkeypatch)
    crm.hang(30, times=10, process=False)
    records = _records(3)
    out = handler(make_event(records), Remaining(MARGIN_S + SLOWEST_S - 0.2))
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == ["101", "102", "103"]
    assert crm.requests == [] and crm.active() == []
    b = handler.loop.last_batch
    assert (b.size, b.handled, len(b.reported), b.stopped_by) == (3, 0, 3, "deadline")


def test_a_hanging_crm_gets_no_retry_that_could_overrun(crm, monkeypatch):
    """Time for one record at the CRM's timeouts: the first upsert hangs until the client's
    read timeout, and then no retry starts (it could not end before the deadline): the record
    and the rest are reported for retry; exactly one request reached the CRM."""
    handler = _handler(monkeypatch)
    crm.hang(30, times=10, process=False)
    records = _records(3)
    out = handler(make_event(records), Remaining(MARGIN_S + SLOWEST_S + 0.5))
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == ["101", "102", "103"]
    assert len(crm.requests) == 1 and crm.active() == []
    b = handler.loop.last_batch
    assert b.handled == 0 and b.retried == 0 and len(b.reported) == 3  # conserved: 3 in, 3 reported


def test_with_time_enough_the_same_batch_goes_through(crm, monkeypatch):
    """The margin is not a penalty on a healthy sink: with the time for it, the batch is done."""
    handler = _handler(monkeypatch)
    out = handler(make_event(_records(3)), Remaining(MARGIN_S + 3 * SLOWEST_S + 1))
    assert out == {"batchItemFailures": []}
    assert sorted(c["properties"]["email"] for c in crm.active()) == [f"user{i}@example.com" for i in (1, 2, 3)]
