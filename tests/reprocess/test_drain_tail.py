"""The drain's tail: no long poll once the backlog is drained, and deletes behind the loop."""
from __future__ import annotations

import threading

import boto3
import pytest

from reprocess.worker import drain
from tests.support.aws import queue_count
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item

from . import sample_consumers


def _watch_receives(sqs) -> list[tuple[int, int]]:
    """(WaitTimeSeconds, messages returned) of every ReceiveMessage on ``sqs``."""
    seen: list[tuple[int, int]] = []

    def params(params, context, **kw):
        context["wait"] = params.get("WaitTimeSeconds", 0)

    def result(parsed, context, **kw):
        seen.append((context.get("wait", 0), len(parsed.get("Messages") or [])))

    sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", params)
    sqs.meta.events.register("after-call.sqs.ReceiveMessage", result)
    return seen


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_small_backlog_never_waits_on_an_empty_queue(queues, index_table, concurrency):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(20)])
    sqs = boto3.client("sqs")
    receives = _watch_receives(sqs)
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v1, concurrency=concurrency,
              wait_time_s=2, sqs=sqs)  # the default long poll
    assert (s.taken, s.succeeded, s.stopped_by) == (20, 20, "queue empty") and queue_count(failures) == 0
    # Only the first receive long-polls (and it found messages): the run never waits out a long
    # poll on an empty queue at its end (the 1-4 s tail), though 20 is a multiple of 10.
    long_polls = [n for wait, n in receives if wait > 0]
    assert len(long_polls) == 1 and long_polls[0] > 0, receives
    assert receives[-1] == (0, 0)  # what ended the run: an empty short poll


def test_deletes_run_behind_the_next_round(queues, index_table):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(30)])
    sqs = boto3.client("sqs")
    next_round_runs = threading.Event()
    handled: list[str] = []
    waited: list[bool] = []

    def handle(record):
        sample_consumers.index_v1(record)
        handled.append(record.keys["user_id"])
        if len(handled) > 10:  # a record of the second round (rounds of 10 at concurrency 1)
            next_round_runs.set()

    def first_delete_waits_for_the_next_round(**kw):
        if not waited:
            waited.append(next_round_runs.wait(timeout=60))  # sequential deletes would time out

    sqs.meta.events.register("before-send.sqs.DeleteMessageBatch", first_delete_waits_for_the_next_round)
    s = drain("search-indexer", mode="replay", handle_record=handle, concurrency=1, wait_time_s=0, sqs=sqs)
    assert waited == [True]
    assert (s.taken, s.succeeded, s.delete_failures) == (30, 30, 0) and queue_count(failures) == 0


def test_an_empty_short_poll_with_messages_left_does_not_end_the_run(queues, index_table):
    """SQS answers a short poll from a sample of its servers: it can come back empty while
    messages remain. The run asks the queue's visible count before it ends on one."""
    from botocore.awsrequest import AWSResponse

    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(20)])
    sqs = boto3.client("sqs")
    receives = _watch_receives(sqs)
    missed: list[int] = []

    def wait_of(params, context, **kw):
        context["short"] = not params.get("WaitTimeSeconds")

    def sampled_servers_hold_none(context, **kw):
        if context.get("short") and not missed:  # the first short poll, 10 messages still queued
            missed.append(queue_count(failures))
            return AWSResponse("https://sqs.local", 200, {}, None), {"Messages": []}
        return None

    sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", wait_of)
    sqs.meta.events.register("before-call.sqs.ReceiveMessage", sampled_servers_hold_none)
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v1, concurrency=1,
              wait_time_s=2, sqs=sqs)
    assert missed and missed[0] > 0  # the miss happened with messages in the queue
    assert (s.taken, s.succeeded, s.stopped_by) == (20, 20, "queue empty") and queue_count(failures) == 0
    assert [wait for wait, _ in receives].count(2) == 1  # still only the first receive waits


def test_slow_deletes_hold_the_loop_back_before_taken_messages_reappear(queues, index_table):
    """Deletes run behind the loop, but at most one round behind: with no bound, a backlog
    outpaces slow deletes until taken messages pass their visibility timeout, come back
    (held as already tried) and their deletes, made with an old receipt handle, do not take:
    the run says every message succeeded and leaves them on the queue."""
    import time as _time

    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(120)])
    sqs = boto3.client("sqs")

    def slow_delete(**kw):
        _time.sleep(0.6)  # a round's deletes take longer than the round (10 records x 0.03 s)

    def handle(record):
        sample_consumers.index_v1(record)
        _time.sleep(0.03)

    sqs.meta.events.register("before-send.sqs.DeleteMessageBatch", slow_delete)
    s = drain("search-indexer", mode="replay", handle_record=handle, concurrency=1,
              wait_time_s=0, visibility_timeout_s=2, sqs=sqs)
    assert (s.taken, s.succeeded, s.delete_failures) == (120, 120, 0) and s.conserved
    assert queue_count(failures) == 0


def test_a_message_delivered_again_while_it_ran_is_not_left_behind(queues, index_table):
    """SQS delivers at least once: a message can come back (a new receipt handle) while its
    first copy runs. The first copy's delete, with the older handle, 'succeeds' without
    deleting; the run deletes the held copy by its newer handle instead of releasing it."""
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(20)])
    sqs = boto3.client("sqs")
    other = boto3.client("sqs")
    first_receipts: list[str] = []
    handled: list[str] = []

    def remember(parsed, **kw):
        if not first_receipts and parsed.get("Messages"):
            first_receipts.append(parsed["Messages"][0]["ReceiptHandle"])

    def redeliver_before_the_second_receive(**kw):
        if first_receipts and len(first_receipts) == 1:
            first_receipts.append("redelivered")
            other.change_message_visibility(QueueUrl=failures, ReceiptHandle=first_receipts[0], VisibilityTimeout=0)

    def handle(record):
        sample_consumers.index_v1(record)
        handled.append(record.keys["user_id"])

    def entries_of(params, context, **kw):
        context["entries"] = params.get("Entries") or []

    def stale_handle_deletes_nothing(context, **kw):
        """SQS: a delete with a receipt handle older than the latest 'succeeds', but the
        message might not be deleted (moto deletes it; this makes it behave as SQS may)."""
        from botocore.awsrequest import AWSResponse

        entries = context.get("entries") or []
        if not (first_receipts and any(e["ReceiptHandle"] == first_receipts[0] for e in entries)):
            return None
        rest = [e for e in entries if e["ReceiptHandle"] != first_receipts[0]]
        if rest:
            other.delete_message_batch(QueueUrl=failures, Entries=rest)
        return AWSResponse("https://sqs.local", 200, {}, None), {"Successful": [{"Id": e["Id"]} for e in entries]}

    sqs.meta.events.register("after-call.sqs.ReceiveMessage", remember)
    sqs.meta.events.register("before-call.sqs.ReceiveMessage", redeliver_before_the_second_receive)
    sqs.meta.events.register("provide-client-params.sqs.DeleteMessageBatch", entries_of)
    sqs.meta.events.register("before-call.sqs.DeleteMessageBatch", stale_handle_deletes_nothing)
    s = drain("search-indexer", mode="replay", handle_record=handle, concurrency=1, wait_time_s=0, sqs=sqs)
    assert (s.taken, s.succeeded, s.delete_failures) == (20, 20, 0) and s.conserved
    assert sorted(handled) == sorted(set(handled)) and len(handled) == 20  # the copy did not run twice
    assert s.held >= 1  # the copy came back and was held as already tried
    assert queue_count(failures) == 0
