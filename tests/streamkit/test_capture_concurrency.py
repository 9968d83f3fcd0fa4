"""dlq-capture sends its capture batches concurrently (a small bound), while the loop goes on:
every failed record still ends captured or reported, and Lambda is told the lowest record
whose capture failed."""
from __future__ import annotations

import threading

from streamkit import stream_handler
from streamkit.capture import DEFAULT_MAX_IN_FLIGHT
from streamkit.testing import LambdaContext
from tests.support.aws import take_all

from .helpers import Recorder, event_of, reported, seqs, user_records


def _handler(monkeypatch, queue_url):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    return stream_handler("search-indexer", Recorder(), policy="dlq-capture")


def _calls(handler):
    """Count SendMessageBatch calls in flight on the policy's client; remember the peak."""
    sqs = handler.loop.policy.capture.sqs
    state = {"now": 0, "peak": 0, "calls": 0, "ids": []}
    lock = threading.Lock()

    def before(params, **kw):
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["now"])
            state["ids"].append([e["Id"] for e in params["Entries"]])

    def after(**kw):
        with lock:
            state["now"] -= 1

    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", before)
    sqs.meta.events.register("after-call.sqs.SendMessageBatch", after)
    sqs.meta.events.register("after-call-error.sqs.SendMessageBatch", after)
    return state


def test_the_sqs_client_is_made_at_cold_start(quiet_env, queue_url, monkeypatch):
    h = _handler(monkeypatch, queue_url)
    assert h.loop.policy.capture._sqs is not None  # not on the first failure (~200 ms there)


def test_capture_batches_overlap_and_every_failure_is_captured(quiet_env, queue_url, monkeypatch):
    h = _handler(monkeypatch, queue_url)
    state = _calls(h)
    both_in_flight = threading.Barrier(2, timeout=30)  # only passes if two sends overlap
    arrived, passed = [], []
    lock = threading.Lock()

    def first_two_wait_for_each_other(**kw):
        with lock:
            arrived.append(1)
            first_two = len(arrived) <= 2
        if first_two:
            both_in_flight.wait()
            passed.append(1)

    h.loop.policy.capture.sqs.meta.events.register("before-send.sqs.SendMessageBatch", first_two_wait_for_each_other)
    n = 200
    bad = set(range(0, n, 2))  # 50% failing: 100 captures, 10 SendMessageBatch calls
    records = user_records(n, bad=bad)
    assert h(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    b = h.loop.last_batch
    assert len(passed) == 2 and state["calls"] == 10
    assert 2 <= state["peak"] <= DEFAULT_MAX_IN_FLIGHT
    assert (b.handled, b.captured, len(b.reported), b.dropped) == (100, 100, 0, 0)
    b.check()
    captured = {m["body"]["record"]["dynamodb"]["SequenceNumber"] for m in take_all(queue_url)}
    assert captured == {seqs(records)[i] for i in bad}


def test_a_failed_capture_batch_is_reported_and_lambda_resumes_at_its_lowest_record(quiet_env, queue_url, monkeypatch):
    from botocore.exceptions import ClientError

    h = _handler(monkeypatch, queue_url)
    state = _calls(h)

    def fail_the_third_group(params, **kw):  # failures 21-30 are records 41, 43, ... 59
        if "45" in [e["Id"] for e in params["Entries"]]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "SendMessageBatch")

    h.loop.policy.capture.sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", fail_the_third_group)
    n = 120
    bad = set(range(1, n, 2))  # 60 failures: calls of 10
    records = user_records(n, bad=bad)
    resp = h(event_of(records), LambdaContext())
    b = h.loop.last_batch
    b.check()  # in = handled + captured + reported
    (third,) = [[int(i) for i in ids] for ids in state["ids"] if "45" in ids]
    assert third == list(range(41, 60, 2))
    lowest = min(b.reported)
    assert set(third) <= b.reported and lowest == min(third)
    assert reported(resp) == [seqs(records)[i] for i in sorted(b.reported)]  # Lambda resumes at the first
    captured = {m["body"]["record"]["dynamodb"]["SequenceNumber"] for m in take_all(queue_url)}
    assert captured == {seqs(records)[i] for i in range(n) if i in bad and i not in b.reported}
    assert b.captured == len(captured) and b.failed == b.captured + len(set(third))
    # Everything Lambda will not deliver again was handled or captured: nothing lost.
    before = set(range(lowest))
    assert all(i not in bad or seqs(records)[i] in captured for i in before)
