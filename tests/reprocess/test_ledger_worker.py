"""Ledger conservation: records captured by the real stream path, drained by the real worker.
For every captured record there is exactly one ledger item, and its final state is what the
worker did with the record (handled, parked with its reason, or retrying with its attempts)."""
from __future__ import annotations

import json

import boto3

from reprocess.worker import drain
from streamkit import stream_handler
from streamkit.ledger import failure_id
from streamkit.testing import LambdaContext, make_event
from tests.support.aws import take_all
from tests.support.users import insert, user_item

from ..streamkit.test_capture_faults import error_response
from ..streamkit.test_ledger import ledger_items, peek_all

FAST = dict(wait_time_s=0)


class Outcomes:
    """A consumer whose fate per user is fixed: ok, always fails, or fails once then succeeds."""

    def __init__(self) -> None:
        self.tries: dict[str, int] = {}

    def fate(self, uid: str) -> str:
        return ("ok", "never", "once")[int(uid[1:]) % 3]

    def __call__(self, record) -> None:
        uid = record.keys["user_id"]
        self.tries[uid] = self.tries.get(uid, 0) + 1
        fate = self.fate(uid)
        if fate == "never" or (fate == "once" and self.tries[uid] == 1):
            raise KeyError("fullname")


def capture_all(queues, monkeypatch, n: int) -> list[dict]:
    """``n`` records, every one failing on the stream path and captured by dlq-capture."""
    failures, _ = queues
    monkeypatch.setenv("FAILURE_QUEUE_URL", failures)

    def v1(record):
        raise KeyError("fullname")

    records = [insert(user_item(i)) for i in range(n)]
    handler = stream_handler("search-indexer", v1, policy="dlq-capture")
    assert handler(make_event(records), LambdaContext())["batchItemFailures"] == []
    assert handler.loop.last_batch.captured == n
    return records


def by_seq(items: list[dict]) -> dict[str, dict]:
    return {i["sequenceNumber"]: i for i in items}


def test_every_captured_record_has_one_item_whose_state_is_what_the_worker_did(queues, ledger_table, monkeypatch):
    failures, parking = queues
    records = capture_all(queues, monkeypatch, 12)
    assert {i["state"] for i in ledger_items(ledger_table, "search-indexer")} == {"captured"}

    consumer = Outcomes()
    first = drain("search-indexer", mode="replay", handle_record=consumer, max_attempts=3, job_id="job-one", **FAST)
    assert (first.taken, first.succeeded, first.still_failing, first.parked) == (12, 4, 8, 0)
    items = by_seq(ledger_items(ledger_table, "search-indexer"))
    assert len(items) == 12
    in_queue = {m["MessageId"]: json.loads(m["Body"]) for m in peek_all(failures)}
    for r in records:
        item = items[r["dynamodb"]["SequenceNumber"]]
        if consumer.fate(r["dynamodb"]["Keys"]["user_id"]["S"]) == "ok":
            assert (item["state"], item["attempts"], item["settledBy"]) == ("handled", 2, "job job-one")
        else:  # re-sent: the item names the copy now in the queue, with its attempt count and error
            assert (item["state"], item["attempts"]) == ("retrying", 2)
            assert item["messageId"] in in_queue
            assert in_queue[item["messageId"]]["attempts"] == 2
            assert failure_id(in_queue[item["messageId"]]) == item["id"]

    second = drain("search-indexer", mode="replay", handle_record=consumer, max_attempts=3, **FAST)
    assert (second.taken, second.succeeded, second.parked) == (8, 4, 4)
    items = by_seq(ledger_items(ledger_table, "search-indexer"))
    parked = {m["body"]["record"]["dynamodb"]["SequenceNumber"]: m for m in take_all(parking)}
    assert len(items) == 12  # still exactly one per captured record
    for r in records:
        seq = r["dynamodb"]["SequenceNumber"]
        item, fate = items[seq], consumer.fate(r["dynamodb"]["Keys"]["user_id"]["S"])
        expected = {"ok": "handled", "once": "handled", "never": "parked"}[fate]
        assert item["state"] == expected and item["consumerState"] == f"search-indexer#{expected}"
        if fate == "never":
            assert item["parkReason"] == parked[seq]["attributes"]["parkReason"]
            assert item["parkReason"].startswith("gave up after 3 attempts: KeyError")
            assert item["attempts"] == 3 and item["settledBy"].startswith("run ")
        else:
            assert "parkReason" not in item
    assert set(parked) == {s for s, i in items.items() if i["state"] == "parked"}
    assert take_all(failures) == []


def test_malformed_messages_get_an_item_when_parked(queues, ledger_table):
    failures, parking = queues
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody="not json")
    summary = drain("search-indexer", mode="replay", handle_record=lambda r: None, **FAST)
    assert summary.parked == 1
    (item,) = ledger_items(ledger_table, "search-indexer")
    (msg,) = take_all(parking)
    assert item["state"] == "parked" and item["parkReason"].startswith("malformed envelope: body is not JSON")
    assert msg["attributes"]["ledgerId"] == item["id"]  # a redrive can find its item again


def test_a_failing_ledger_changes_no_disposition(queues, ledger_table, monkeypatch):
    failures, _ = queues
    capture_all(queues, monkeypatch, 6)
    ddb = boto3.client("dynamodb")
    ddb.meta.events.register("before-send.dynamodb.UpdateItem",
                             lambda **kw: error_response(500, "InternalServerError"))
    summary = drain("search-indexer", mode="replay", handle_record=lambda r: None, dynamodb=ddb, **FAST)
    assert (summary.taken, summary.succeeded) == (6, 6) and summary.conserved
    assert summary.ledger_write_failures == 6
    assert any(n.startswith("ledger: 6 update(s) failed") for n in summary.notes)
    assert take_all(failures) == []
