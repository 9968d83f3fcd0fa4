"""The failure ledger on the stream path: one item per captured record, written in batches,
never blocking or losing a capture; the record a hard-fail shard is stuck on."""
from __future__ import annotations

import json
import time

import boto3
import pytest

from streamkit import stream_handler
from streamkit.envelope import build_envelope
from streamkit.ledger import BATCH_WRITE_MAX, Ledger, failure_id, from_item
from streamkit.testing import LambdaContext
from tests.support.aws import take_all

from .helpers import Recorder, event_of, reported, seqs, user_records
from .test_capture_faults import error_response


def ledger_items(table: str, consumer: str) -> list[dict]:
    ddb = boto3.client("dynamodb")
    items, start = [], None
    while True:
        kw = {"ExclusiveStartKey": start} if start else {}
        resp = ddb.query(TableName=table, KeyConditionExpression="consumer = :c",
                         ExpressionAttributeValues={":c": {"S": consumer}}, **kw)
        items += [from_item(i) for i in resp["Items"]]
        start = resp.get("LastEvaluatedKey")
        if not start:
            return items


def count_calls(client, operation: str) -> list[dict]:
    calls: list[dict] = []
    client.meta.events.register(f"provide-client-params.dynamodb.{operation}",
                                lambda params, **kw: calls.append(params))
    return calls


def test_each_captured_record_gets_one_ledger_item_naming_its_message(quiet_env, queue_url, ledger_table,
                                                                       monkeypatch):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(30, bad={1, 4, 7, 12, 20, 29})
    handler = stream_handler("search-indexer", Recorder(), policy="dlq-capture")
    resp = handler(event_of(records), LambdaContext())
    assert reported(resp) == []
    messages = {m["MessageId"]: json.loads(m["Body"]) for m in peek_all(queue_url)}
    items = ledger_items(ledger_table, "search-indexer")
    # conservation: exactly one item per captured record, and it names the message that holds it
    assert len(items) == len(messages) == 6
    by_message = {i["messageId"]: i for i in items}
    assert set(by_message) == set(messages)
    for mid, env in messages.items():
        item = by_message[mid]
        assert item["id"] == failure_id(env)
        assert item["state"] == "captured" and item["consumerState"] == "search-indexer#captured"
        assert item["errorType"] == "KeyError" and item["errorMessage"] == "'fullname'"
        assert item["sequenceNumber"] == env["record"]["dynamodb"]["SequenceNumber"]
        assert item["keys"] == env["record"]["dynamodb"]["Keys"]
        assert json.loads(item["keysText"]) == {"user_id": env["record"]["dynamodb"]["Keys"]["user_id"]["S"]}
        assert item["attempts"] == 1 and item["capturedAt"] == env["capturedAt"]
        assert item["eventName"] == "INSERT" and item["recordCreatedAt"]
        # expires after the longest a failure can live (84 days by default)
        assert abs(item["expiresAt"] - (time.time() + 84 * 86_400)) < 120


def test_a_batch_writes_its_ledger_items_25_per_call_not_one_call_per_sqs_send(quiet_env, queue_url, ledger_table,
                                                                                 monkeypatch):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(80, bad=set(range(0, 80, 4)) | set(range(1, 80, 4)) | set(range(2, 80, 2)))
    handler = stream_handler("search-indexer", Recorder(), policy="dlq-capture")
    calls = count_calls(handler.loop.policy.capture.ledger.client, "BatchWriteItem")
    sends = []
    handler.loop.policy.capture.sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **kw: sends.append(len(params["Entries"])))
    assert reported(handler(event_of(records), LambdaContext())) == []
    failed = handler.loop.last_batch.captured
    assert failed == 60 and sends == [10] * 6
    assert [len(c["RequestItems"][ledger_table]) for c in calls] == [25, 25, 10]  # not 6 calls of 10
    assert len(ledger_items(ledger_table, "search-indexer")) == 60


def test_a_claim_checked_capture_keeps_its_keys_and_says_where_the_record_is(quiet_env, queue_url, bucket,
                                                                              ledger_table, monkeypatch):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    monkeypatch.setenv("FAILURE_BUCKET", bucket)
    monkeypatch.setenv("FAILURE_MAX_MESSAGE_BYTES", "2048")
    big = user_records(1, bad={0})
    big[0]["dynamodb"]["NewImage"]["bio"] = {"S": "x" * 5000}
    handler = stream_handler("search-indexer", Recorder(), policy="dlq-capture")
    assert reported(handler(event_of(big), LambdaContext())) == []
    (item,) = ledger_items(ledger_table, "search-indexer")
    assert item["claimCheck"].startswith(f"s3://{bucket}/claim-checks/search-indexer/")
    assert item["keys"] == big[0]["dynamodb"]["Keys"] and item["sequenceNumber"] == seqs(big)[0]


def peek_all(queue_url: str) -> list[dict]:
    """Every message, received once and made visible again (test-side inspection only)."""
    sqs = boto3.client("sqs")
    seen: dict[str, dict] = {}
    for _ in range(20):
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=20).get("Messages", [])
        if not msgs:
            break
        seen.update({m["MessageId"]: m for m in msgs})
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
               for i, m in enumerate(seen.values())]
    for i in range(0, len(entries), 10):
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries[i : i + 10])
    return list(seen.values())


def _envelopes(n: int) -> list[tuple[dict, str, None]]:
    return [(build_envelope(consumer="search-indexer", record=r, error={"type": "KeyError", "message": "x"}),
             f"m{i}", None) for i, r in enumerate(user_records(n))]


def test_put_failures_writes_25_per_call(ledger_table):
    ledger = Ledger(ledger_table, "search-indexer")
    calls = count_calls(ledger.client, "BatchWriteItem")
    result = ledger.put_failures(_envelopes(60))
    assert (result.written, result.failed) == (60, 0)
    assert [len(c["RequestItems"][ledger_table]) for c in calls] == [BATCH_WRITE_MAX, BATCH_WRITE_MAX, 10]
    assert len(ledger_items(ledger_table, "search-indexer")) == 60


def test_unprocessed_items_are_retried_within_bounds(ledger_table):
    failures: list[tuple[int, str]] = []
    sleeps: list[float] = []
    ledger = Ledger(ledger_table, "search-indexer", sleep=sleeps.append, on_failure=lambda n, r: failures.append((n, r)))
    calls = count_calls(ledger.client, "BatchWriteItem")
    _install_unprocessed(ledger.client, ledger_table, times=2)
    result = ledger.put_failures(_envelopes(10))
    assert (result.written, result.failed) == (10, 0) and failures == []
    assert [len(c["RequestItems"][ledger_table]) for c in calls] == [10, 3, 3]  # the 3 retried twice
    assert len(sleeps) == 2 and all(0 < s <= 0.2 for s in sleeps)

    # always unprocessed: given up after the bound, counted, never raised
    ledger2 = Ledger(ledger_table, "search-indexer", sleep=sleeps.append,
                     on_failure=lambda n, r: failures.append((n, r)))
    calls2 = count_calls(ledger2.client, "BatchWriteItem")
    _install_unprocessed(ledger2.client, ledger_table, times=None)
    result = ledger2.put_failures(_envelopes(10))
    assert len(calls2) == 1 + ledger2.unprocessed_retries
    assert (result.written, result.failed) == (7, 3)
    assert failures == [(3, "3 item(s) still unprocessed after 3 retries")]


def _install_unprocessed(client, table: str, times: int | None) -> None:
    state = {"n": 0, "params": None}

    def remember(params, **kw):
        state["params"] = params

    def after(parsed, **kw):
        if times is not None and state["n"] >= times:
            return
        state["n"] += 1
        parsed["UnprocessedItems"] = {table: state["params"]["RequestItems"][table][-3:]}

    client.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", remember)
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", after)


@pytest.mark.parametrize("status,code", [(400, "ProvisionedThroughputExceededException"), (500, "InternalServerError")])
def test_a_failing_ledger_never_blocks_or_loses_a_capture(quiet_env, queue_url, ledger_table, monkeypatch, capsys,
                                                         status, code):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(12, bad={2, 5, 9})
    handler = stream_handler("search-indexer", Recorder(), policy="dlq-capture")
    ledger = handler.loop.policy.capture.ledger
    ledger.client.meta.events.register("before-send.dynamodb.BatchWriteItem",
                                       lambda **kw: error_response(status, code))
    resp = handler(event_of(records), LambdaContext())
    batch = handler.loop.last_batch
    assert reported(resp) == [] and batch.captured == 3 and batch.handled == 9  # the captures stand
    assert len(take_all(queue_url)) == 3
    assert ledger_items(ledger_table, "search-indexer") == []
    out = capsys.readouterr().out
    metric_docs = [json.loads(line) for line in out.splitlines() if '"ledger_write_failures"' in line]
    assert metric_docs and metric_docs[0]["ledger_write_failures"] == [3.0]  # counted: an alarm can see it
    assert "ledger write failed" in out


def test_hard_fail_records_the_real_error_and_attempts_of_the_blocking_record(quiet_env, ledger_table):
    records = user_records(6, bad={3})
    handler = stream_handler("crm-sync", Recorder(), policy="hard-fail")
    for _ in range(3):  # Lambda retries from the failed record: three failed invocations
        resp = handler(event_of(records[3:] if _ else records), LambdaContext())
        assert reported(resp) == seqs(records)[3:]  # the failed record and all after it (Lambda resumes at it)
    (item,) = ledger_items(ledger_table, "crm-sync")
    assert item["id"] == f"b#{seqs(records)[3]}" and item["kind"] == "blocking"
    assert item["state"] == "blocked" and item["attempts"] == 3
    assert (item["errorType"], item["errorMessage"]) == ("KeyError", "'fullname'")
    assert item["keys"] == records[3]["dynamodb"]["Keys"] and item["recordCreatedAt"]
    assert item["capturedAt"] <= item["lastFailedAt"]  # first failure, last failure

    # the fix, deployed: a cold start, then Lambda retries from the same record, which succeeds
    fixed = stream_handler("crm-sync", lambda r: None, policy="hard-fail")
    assert reported(fixed(event_of(records[3:]), LambdaContext())) == []
    (item,) = ledger_items(ledger_table, "crm-sync")
    assert item["state"] == "resolved" and item["consumerState"] == "crm-sync#resolved" and item["resolvedAt"]

    # and a healthy consumer's later batches write nothing more
    ddb_calls = count_calls(fixed.loop.policy.ledger.client, "UpdateItem")
    fixed(event_of(user_records(5, start=100)), LambdaContext())
    assert ddb_calls == []
