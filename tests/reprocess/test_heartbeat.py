"""The worker keeps what it works on hidden (reprocess.heartbeat): a round that runs past the
visibility timeout is not shown to another receiver, so nothing is applied twice.

The other receiver is a second worker's receive, polled raw while the first run handles slow
records. Without the heartbeat, the messages come back to that receiver once the timeout has
passed.
"""
from __future__ import annotations

import threading
import time

import boto3

from reprocess.heartbeat import VisibilityKeeper
from reprocess.summary import Summary
from reprocess.worker import drain
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item

VISIBILITY_S = 3
HANDLE_S = 2.5  # three records in one round: 7.5 s, past the 3 s visibility timeout


def _poll_other_receiver(url: str, stop: threading.Event, seen: list[str]) -> None:
    sqs = boto3.client("sqs")
    while not stop.is_set():
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1).get("Messages", []):
            seen.append(m["MessageId"])
        stop.wait(0.3)


def test_a_round_longer_than_the_visibility_timeout_is_not_shown_to_another_receiver(queues, index_table):
    failures, _ = queues
    records = [insert(user_item(i)) for i in range(3)]
    capture(failures, [envelope(r) for r in records])
    handled: list[str] = []

    stop, stolen = threading.Event(), []
    other = threading.Thread(target=_poll_other_receiver, args=(failures, stop, stolen))

    def slow(record) -> None:
        if not handled and not other.is_alive():  # the run holds all three: now the other receiver polls
            other.start()
        time.sleep(HANDLE_S)
        handled.append(record.keys["user_id"])

    try:
        s = drain("search-indexer", mode="replay", handle_record=slow, wait_time_s=0, concurrency=1,
                  visibility_timeout_s=VISIBILITY_S, queue_url=failures)
    finally:
        stop.set()
        if other.is_alive():
            other.join()
    assert other.ident is not None  # it polled
    assert stolen == []  # no other receiver got a message while the run worked on it
    assert (s.taken, s.succeeded, s.still_failing, s.parked) == (3, 3, 0, 0) and s.conserved
    assert sorted(handled) == ["u0000", "u0001", "u0002"]
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=failures, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


def test_the_keeper_extends_only_what_is_due_and_forgets_what_was_settled(queues):
    failures, _ = queues
    sqs = boto3.client("sqs")
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    got = sqs.receive_message(QueueUrl=failures, MaxNumberOfMessages=10, VisibilityTimeout=2)["Messages"]
    now = [100.0]
    keeper = VisibilityKeeper(sqs, failures, 30, Summary("search-indexer", failures, "replay"),
                              clock=lambda: now[0])
    keeper.track(got)
    keeper.untrack([got[0]["MessageId"]])  # settled: never extended
    keeper.beat()
    assert keeper.extended == 0  # nothing is due yet
    now[0] += 15
    keeper.beat()
    assert (keeper.extended, keeper.failed) == (2, 0)
    keeper.stop()
    time.sleep(2.5)  # the untracked one is visible again; the two extended to 30 s are not
    back = sqs.receive_message(QueueUrl=failures, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
    assert [m["MessageId"] for m in back] == [got[0]["MessageId"]]


def test_a_failed_extension_is_noted_and_the_run_goes_on(queues):
    failures, _ = queues
    sqs = boto3.client("sqs")
    summary = Summary("search-indexer", failures, "replay")
    keeper = VisibilityKeeper(sqs, failures.rsplit("/", 1)[0] + "/no-such-queue", VISIBILITY_S, summary,
                              clock=lambda: 0.0)
    keeper.track([{"MessageId": "m1", "ReceiptHandle": "r1"}])
    keeper._tracked["m1"] = ("r1", -VISIBILITY_S)  # due
    keeper.beat()
    keeper.stop()
    assert keeper.failed == 1
    assert any("could not extend the visibility" in n for n in summary.notes)


def test_no_heartbeat_below_two_seconds_or_on_a_dry_run(queues):
    failures, _ = queues
    keeper = VisibilityKeeper(boto3.client("sqs"), failures, 1, Summary("search-indexer", failures, "replay"))
    keeper.track([{"MessageId": "m1", "ReceiptHandle": "r1"}])
    assert keeper._thread is None and not keeper.enabled


def test_a_message_stays_hidden_until_its_delete_behind_the_loop_has_returned(queues, index_table):
    """Deletes run behind the loop: a slow DeleteMessageBatch (past the timeout) must not let
    another receiver take a message the run has handled but not yet deleted."""
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(2)])
    sqs = boto3.client("sqs")
    stop, stolen = threading.Event(), []
    other = threading.Thread(target=_poll_other_receiver, args=(failures, stop, stolen))

    def slow_delete(**kw):
        if not other.is_alive():
            other.start()
        time.sleep(VISIBILITY_S * 2)

    sqs.meta.events.register("before-send.sqs.DeleteMessageBatch", slow_delete)
    try:
        s = drain("search-indexer", mode="replay", handle_record=lambda record: None, wait_time_s=0,
                  concurrency=1, visibility_timeout_s=VISIBILITY_S, queue_url=failures, sqs=sqs)
    finally:
        stop.set()
        if other.is_alive():
            other.join()
    assert other.ident is not None
    assert stolen == []
    assert (s.taken, s.succeeded, s.delete_failures) == (2, 2, 0) and s.conserved
    attrs = sqs.get_queue_attributes(QueueUrl=failures, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
