"""The worker in-process (reprocess.worker.drain) against the moto server."""
from __future__ import annotations

import json
import threading

import boto3
import pytest

from reprocess.worker import drain
from streamkit.errors import ConfigError, TransientError
from streamkit.record import StreamRecord
from streamkit.testing import make_record
from tests.support.aws import create_consumer_queues, create_idempotency_table, create_table, queue_count, take_all
from tests.support.failures import capture, envelope, send_bodies
from tests.support.users import insert, user_item

from . import sample_consumers
from .conftest import index_items

FAST = dict(wait_time_s=0)


def conserved(s) -> bool:
    return s.taken == s.succeeded + s.still_failing + s.parked and s.conserved


def test_parks_after_max_attempts(queues, index_table):
    failures, parking = queues
    records = [insert(user_item(i)) for i in range(4)]
    capture(failures, [envelope(r) for r in records])

    first = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, max_attempts=3, **FAST)
    assert (first.still_failing, first.parked, first.exit_code) == (4, 0, 1) and conserved(first)
    second = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, max_attempts=3, **FAST)
    assert (second.taken, second.still_failing, second.parked, second.exit_code) == (4, 0, 4, 1) and conserved(second)

    assert queue_count(failures) == 0
    parked = take_all(parking)
    assert sorted(m["body"]["record"]["eventID"] for m in parked) == sorted(r["eventID"] for r in records)
    for m in parked:
        assert m["body"]["attempts"] == 3
        assert m["body"]["error"]["type"] == "ValueError"
        assert m["body"]["parked"]["reason"].startswith("gave up after 3 attempts: ValueError")
        assert m["attributes"]["parkReason"].startswith("gave up after 3 attempts")
        assert m["attributes"]["consumer"] == "search-indexer"


def test_malformed_envelopes_are_parked_with_reasons(queues, index_table):
    failures, parking = queues
    good = insert(user_item(1))
    no_ddb = envelope(good)
    no_ddb["record"] = {"eventID": "x", "eventName": "INSERT"}
    bodies = [
        "not json",
        json.dumps({**envelope(insert(user_item(2))), "version": 99}),
        json.dumps(envelope(insert(user_item(3)), consumer="billing")),
        json.dumps(envelope(insert(user_item(4)), consumer="crm-sync")),
        json.dumps(no_ddb),
        json.dumps(envelope(good)),
    ]
    send_bodies(failures, bodies)

    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v1, **FAST)
    assert (s.taken, s.succeeded, s.parked, s.still_failing) == (6, 1, 5, 0) and conserved(s)
    assert s.exit_code == 1
    assert queue_count(failures) == 0
    parked = take_all(parking)
    reasons = sorted(m["attributes"]["parkReason"] for m in parked)
    assert any(r.startswith("malformed envelope: body is not JSON") for r in reasons)
    assert any("unsupported envelope version 99" in r for r in reasons)
    assert any("unknown consumer 'billing'" in r for r in reasons)
    assert any("envelope for consumer 'crm-sync'" in r for r in reasons)
    assert any(r.startswith("not a valid stream record") for r in reasons)
    assert "not json" in [m["raw"] for m in parked]  # kept byte for byte
    assert set(index_items()) == {"u0001"}


def test_claim_checked_record_is_fetched_from_s3(queues, index_table):
    failures, parking = queues
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="claims")
    big = insert(user_item(7, bio="x" * 5000))
    s3.put_object(Bucket="claims", Key="claim-checks/a.json", Body=json.dumps(big).encode())
    gone = insert(user_item(8))
    capture(
        failures,
        [
            envelope(big, payload_ref={"bucket": "claims", "key": "claim-checks/a.json"}),
            envelope(gone, payload_ref={"bucket": "claims", "key": "claim-checks/missing.json"}),
        ],
    )
    seen = []

    def handler(record):
        seen.append(record)
        sample_consumers.index_v1(record)

    s = drain("search-indexer", mode="replay", handle_record=handler, **FAST)
    assert (s.succeeded, s.parked) == (1, 1) and conserved(s)
    assert seen[0].new_image["bio"] == "x" * 5000  # the whole record, not the stub
    assert seen[0].raw == big
    assert index_items()["u0007"]["name"] == "Ada Number7"
    (p,) = take_all(parking)
    assert "claim-checked record s3://claims/claim-checks/missing.json is missing" in p["attributes"]["parkReason"]


def test_latest_mode_never_rolls_state_back(queues, index_table, users_table, source):
    failures, _ = queues
    table = boto3.resource("dynamodb").Table(users_table)
    old = user_item(1, fullname="Old Name")
    new = user_item(1, fullname="New Name")
    table.put_item(Item=new)  # the table moved on; the index already has the newer state
    sample_consumers.index_v2(StreamRecord(make_record("MODIFY", keys={"user_id": "u0001"}, new_image=new, old_image=old,
                                                       source=source)))
    stale = make_record("MODIFY", keys={"user_id": "u0001"}, new_image=old, old_image=user_item(1, fullname="Older"),
                        source=source)
    removed = insert(user_item(2), source=source)  # captured INSERT of an item deleted since
    sample_consumers.index_v2(StreamRecord(removed))
    capture(failures, [envelope(stale), envelope(removed)])
    seen = []

    def handler(record):
        seen.append(record)
        sample_consumers.index_v2(record)

    s = drain("search-indexer", handle_record=handler, **FAST)  # search-indexer's default: latest
    assert s.mode == "latest" and s.succeeded == 2 and s.exit_code == 0
    assert index_items()["u0001"]["name"] == "New Name"
    assert "u0002" not in index_items()
    captured = StreamRecord(stale)
    by_id = {r.event_id: r for r in seen}
    rebuilt = by_id[captured.event_id]
    assert rebuilt.event_name == "MODIFY" and rebuilt.source == source
    assert rebuilt.sequence_number == captured.sequence_number  # what identifies it is kept,
    assert rebuilt.change_order == captured.change_order  # and so is the captured change's order
    assert rebuilt.old_image is None and rebuilt.new_image["fullname"] == "New Name"
    gone = by_id[StreamRecord(removed).event_id]
    assert gone.event_name == "REMOVE"
    assert gone.old_image["email"] == "user2@example.com"

    # The same stale record in replay mode does roll the index back: why latest exists.
    capture(failures, [envelope(stale)])
    drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert index_items()["u0001"]["name"] == "Old Name"


def test_a_record_already_applied_is_not_applied_twice(env, monkeypatch):
    failures, parking = create_consumer_queues("slack-notifier")
    monkeypatch.setenv("TEST_NOTIFY_TABLE", create_table("notify"))
    monkeypatch.setenv("IDEMPOTENCY_TABLE", create_idempotency_table("idem"))
    applied = insert(user_item(1))
    fresh = insert(user_item(2))
    # The stream path applied this record, yet it was captured too (e.g. the invocation timed out).
    sample_consumers.notify_once(StreamRecord(applied))
    capture(failures, [envelope(applied, "slack-notifier"), envelope(fresh, "slack-notifier"), envelope(fresh, "slack-notifier")])

    s = drain("slack-notifier", handle_record=sample_consumers.notify_once, **FAST)  # replay by default
    assert s.mode == "replay" and (s.taken, s.succeeded) == (3, 3)
    posts = {i["user_id"]: int(i["posts"]) for i in boto3.resource("dynamodb").Table("notify").scan()["Items"]}
    assert posts == {"u0001": 1, "u0002": 1}
    assert queue_count(failures) == 0 and queue_count(parking) == 0


def _keyed_backlog(failures, keys: int, per_key: int) -> None:
    import random

    records = [
        make_record("MODIFY", keys={"user_id": f"k{k}"}, new_image={"user_id": f"k{k}", "n": n})
        for n in range(per_key)  # stream order: n increases with the sequence number
        for k in range(keys)
    ]
    random.Random(7).shuffle(records)  # SQS standard queues deliver in any order
    capture(failures, [envelope(r) for r in records])


class OrderProbe:
    """handle_record that records calls and catches two records of one key running at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int]] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.threads: set[int] = set()
        self.barrier = threading.Barrier(2, timeout=5)
        self.met = False  # two keys were in handle_record at the same moment

    def __call__(self, record):
        key = record.keys["user_id"]
        with self.lock:
            if key in self.running:
                self.overlaps += 1
            self.running.add(key)
            self.calls.append((key, record.new_image["n"]))
            self.threads.add(threading.get_ident())
        try:  # the first two calls wait for each other: proves keys really run side by side
            if not self.met:
                self.barrier.wait()
                self.met = True
        except threading.BrokenBarrierError:
            pass
        finally:
            with self.lock:
                self.running.discard(key)


def test_concurrency_keeps_stream_order_per_key_within_a_round(queues):
    failures, _ = queues
    # 10 messages: one receive takes them all, so they share a round whatever order parallel
    # receives come back in (across rounds, a standard queue's order is not ours to fix)
    _keyed_backlog(failures, keys=2, per_key=5)
    probe = OrderProbe()
    s = drain("search-indexer", mode="replay", handle_record=probe, concurrency=4, receives_per_round=3, **FAST)
    assert s.succeeded == 10 and conserved(s)
    assert probe.met and len(probe.threads) > 1 and probe.overlaps == 0
    for k in range(2):
        assert [n for key, n in probe.calls if key == f"k{k}"] == list(range(5))


def test_concurrency_never_runs_one_key_twice_at_once(queues):
    failures, _ = queues
    _keyed_backlog(failures, keys=3, per_key=10)
    probe = OrderProbe()
    s = drain("search-indexer", mode="replay", handle_record=probe, concurrency=8, **FAST)  # several rounds
    assert s.succeeded == 30 and conserved(s)
    assert probe.overlaps == 0 and len(probe.calls) == 30


def test_transient_errors_get_bounded_retries(queues):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(1))), envelope(insert(user_item(2)))])
    attempts = {}

    def flaky(record):
        uid = record.keys["user_id"]
        attempts[uid] = attempts.get(uid, 0) + 1
        if uid == "u0001" and attempts[uid] < 2:
            raise TransientError("429", retry_after=0)
        if uid == "u0002":
            raise TransientError("still 503", retry_after=0)

    s = drain("search-indexer", mode="replay", handle_record=flaky, max_retries=2, retry_base_delay_s=0, **FAST)
    assert (s.succeeded, s.still_failing) == (1, 1)
    assert attempts == {"u0001": 2, "u0002": 3}


def test_max_and_time_budget_stop_the_run_and_lose_nothing(queues):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(30)])
    ok = lambda record: None  # noqa: E731

    s = drain("search-indexer", mode="replay", handle_record=ok, max_messages=12, **FAST)
    assert s.taken == 12 == s.succeeded and s.stopped_by.startswith("max 12")
    assert queue_count(failures) == 18  # the rest, visible again

    class Checks:  # a deadline that expires after a number of looks (no wall clock)
        def __init__(self, n):
            self.n = n

        def expired(self):
            self.n -= 1
            return self.n < 0

        def remaining_s(self):
            return 0.0 if self.n <= 0 else 60.0

        def allows(self, seconds):
            return not self.expired()

    s = drain("search-indexer", mode="replay", handle_record=ok, deadline=Checks(4), **FAST)
    assert s.stopped_by == "time budget used" and conserved(s)
    assert s.taken + queue_count(failures) == 18


def test_resend_failure_leaves_the_original(queues):
    failures, _ = queues
    records = [insert(user_item(i)) for i in range(3)]
    capture(failures, [envelope(r) for r in records])
    sqs = boto3.client("sqs")

    def refuse(request, **_):  # SQS answers every SendMessageBatch with a 400
        from botocore.awsrequest import AWSResponse

        body = b'{"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": "refused by test"}'

        class Raw:
            def stream(self, **kw):
                yield body

        response = AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, Raw())
        response._content = body
        return response

    sqs.meta.events.register("before-send.sqs.SendMessageBatch", refuse)
    s = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, sqs=sqs, **FAST)
    assert (s.taken, s.still_failing, s.resent) == (3, 3, 0) and conserved(s)
    left = take_all(failures)
    assert sorted(m["body"]["record"]["eventID"] for m in left) == sorted(r["eventID"] for r in records)
    assert {m["body"]["attempts"] for m in left} == {1}  # untouched originals


def test_configuration_errors():
    with pytest.raises(ConfigError, match="unknown consumer"):
        drain("nobody")


def test_config_missing_queue(env):
    with pytest.raises(ConfigError, match="userstream-dev-search-indexer-failures does not exist"):
        drain("search-indexer", mode="replay", handle_record=lambda r: None)


def test_delete_batch_failed_entries_are_counted(queues):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    sqs = boto3.client("sqs")

    def fail_first(parsed, **_):  # moto never reports Failed entries: fake one after the call
        ok = parsed.get("Successful") or []
        if ok:
            first = ok.pop(0)
            parsed.setdefault("Failed", []).append(
                {"Id": first["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            )

    sqs.meta.events.register("after-call.sqs.DeleteMessageBatch", fail_first)
    s = drain("search-indexer", mode="replay", handle_record=lambda r: None, sqs=sqs, **FAST)
    # the message that could not be deleted is still there: it counts as remaining (issue 14, item 4)
    # (moto did delete it: the Failed entry is faked after the call)
    assert s.succeeded == 3 and s.delete_failures == 1 and s.exit_code == 1 and not s.aborted


def test_the_worker_honours_the_stream_paths_retry_settings(queues, monkeypatch):
    """MAX_TRANSIENT_RETRIES / RETRY_BASE_DELAY_MS apply to the worker as to the stream path."""
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(1)))])
    calls = []

    def down(record):
        calls.append(record.event_id)
        raise TransientError("503", retry_after=0)

    monkeypatch.setenv("MAX_TRANSIENT_RETRIES", "4")
    s = drain("search-indexer", mode="replay", handle_record=down, **FAST)
    assert s.still_failing == 1 and len(calls) == 5  # 1 try + 4 retries
    monkeypatch.setenv("MAX_TRANSIENT_RETRIES", "0")
    calls.clear()
    s = drain("search-indexer", mode="replay", handle_record=down, **FAST)
    assert s.still_failing == 1 and len(calls) == 1
    monkeypatch.setenv("MAX_TRANSIENT_RETRIES", "lots")
    with pytest.raises(ConfigError, match="MAX_TRANSIENT_RETRIES"):
        drain("search-indexer", mode="replay", handle_record=down, **FAST)


def test_options_object_and_unknown_keywords(queues):
    from reprocess.options import DrainOptions

    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    opts = DrainOptions(consumer="search-indexer", mode="replay", max_messages=2, wait_time_s=0)
    s = drain(options=opts, handle_record=lambda r: None)
    assert (s.taken, s.succeeded) == (2, 2) and queue_count(failures) == 1
    with pytest.raises(TypeError, match="max_mesages"):
        drain("search-indexer", max_mesages=2)
