"""SQS and S3 faults during capture: nothing is lost, exactly the affected records are reported."""
from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from streamkit import StreamRecord, sources, stream_handler
from streamkit.testing import LambdaContext, make_record
from tests.support.aws import take_all

from .helpers import Recorder, event_of, reported, seqs, user_records


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **kw):
        yield self._body


def error_response(status: int, code: str, message: str = "injected") -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {"x-amzn-query-error": f"{code};Sender", "content-type": "application/x-amz-json-1.0"}
    return AWSResponse("https://sqs.invalid", status, headers, _Raw(body))


def dlq_handler(monkeypatch, queue_url, **env):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return stream_handler("search-indexer", Recorder(), policy="dlq-capture")


def inject(handler, service: str, operation: str, fn) -> list:
    """Register ``fn`` on the policy's real boto3 client (created here, as on first capture)."""
    capture = handler.loop.policy.capture
    client = capture.sqs if service == "sqs" else capture.s3
    seen: list = []

    def hook(**kw):
        seen.append(operation)
        return fn(**kw)

    client.meta.events.register(f"before-send.{service}.{operation}", hook)
    return seen


@pytest.mark.parametrize(
    "status,code",
    [(400, "AWS.SimpleQueueService.RequestThrottled"), (400, "ThrottlingException"), (500, "InternalError"),
     (503, "ServiceUnavailable")],
)
def test_sqs_throttling_or_5xx_reports_exactly_the_failed_records(quiet_env, queue_url, monkeypatch, status, code):
    records = user_records(12, bad={2, 5, 9})
    handler = dlq_handler(monkeypatch, queue_url)
    seen = inject(handler, "sqs", "SendMessageBatch", lambda **kw: error_response(status, code))
    resp = handler(event_of(records), LambdaContext())
    b = handler.loop.last_batch
    # The three failed records could not be captured: each is reported, none dropped.
    assert b.reported == {2, 5, 9} and reported(resp) == [seqs(records)[i] for i in (2, 5, 9)]
    assert b.handled + b.captured + len(b.reported) + b.dropped == 12
    assert b.captured == 0 and b.handled == 9
    if code != "AWS.SimpleQueueService.RequestThrottled":  # a code botocore's retry table knows
        assert len(seen) >= 2  # botocore retried the call before giving up
    assert take_all(queue_url) == []


def test_partial_send_message_batch_failure_reports_only_failed_entries(quiet_env, queue_url, monkeypatch):
    """moto never fails entries itself: mark one entry Failed after the real call."""
    records = user_records(6, bad={1, 3, 4})
    handler = dlq_handler(monkeypatch, queue_url)
    sqs = handler.loop.policy.capture.sqs
    victim = {"id": None}

    def fail_one(parsed, **kw):
        ok = parsed.get("Successful") or []
        target = next((s for s in ok if s["Id"] == "3"), None)
        if target is not None:  # always fail index 3, even on our in-process retry
            ok.remove(target)
            parsed.setdefault("Failed", []).append(
                {"Id": "3", "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            )
            victim["id"] = "3"

    sqs.meta.events.register("after-call.sqs.SendMessageBatch", fail_one)
    resp = handler(event_of(records), LambdaContext())
    b = handler.loop.last_batch
    assert victim["id"] == "3"
    assert reported(resp) == [seqs(records)[3]]  # exactly the record whose capture failed
    assert b.captured == 2 and b.handled == 3  # records 1 and 4 are in the queue
    assert b.handled + b.captured + len(b.reported) + b.dropped == 6
    # Record 3's message reached moto before we "failed" it: at-least-once, never lost.
    in_queue = set(seqs([m["body"]["record"] for m in take_all(queue_url)]))
    assert {seqs(records)[1], seqs(records)[4]} <= in_queue


def test_sqs_outage_connection_refused_reports_failures(quiet_env, queue_url, monkeypatch):
    from local.aws import free_port

    records = user_records(5, bad={0, 4})
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    handler = dlq_handler(monkeypatch, queue_url)
    resp = handler(event_of(records), LambdaContext())
    # Record 0's capture failed: it is reported, and so is everything after it.
    b = handler.loop.last_batch
    assert reported(resp)[0] == seqs(records)[0]
    assert b.handled + b.captured + len(b.reported) + b.dropped == 5
    assert b.captured == 0


def big_record(i: int, kb: int, source: str = "dynamodb") -> dict:
    item = {"user_id": f"big{i}", "email": f"big{i}@example.com", "bio": "x" * (kb * 1024)}
    return make_record("INSERT", keys={"user_id": item["user_id"]}, new_image=item, source=source)


def test_oversized_envelope_goes_to_s3_claim_check(quiet_env, queue_url, bucket, monkeypatch, source):
    records = [big_record(0, 300, source)] + user_records(3, source=source)
    handler = dlq_handler(monkeypatch, queue_url, FAILURE_BUCKET=bucket)
    resp = handler(event_of(records), LambdaContext())
    assert resp == {"batchItemFailures": []}
    (msg,) = take_all(queue_url)
    env = msg["body"]
    ref = env["payloadRef"]
    assert ref["bucket"] == bucket and ref["key"].startswith("claim-checks/search-indexer/")
    # The envelope keeps keys and metadata only (still a record of its source); S3 holds the
    # record, unchanged.
    assert sources.keys_of(env["record"]) == sources.keys_of(records[0]) == {"user_id": {"S": "big0"}}
    assert sources.sequence_number_of(env["record"]) == seqs(records)[0]
    assert "NewImage" not in sources.change_of(env["record"])["dynamodb"]
    assert StreamRecord(env["record"]).change_order == StreamRecord(records[0]).change_order
    assert len(json.dumps(env)) < 4096
    stored = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=ref["key"])["Body"].read())
    assert stored == records[0]


def test_oversized_without_bucket_is_reported_not_dropped(quiet_env, queue_url, monkeypatch):
    records = user_records(2) + [big_record(1, 300)] + user_records(2, start=10)
    handler = dlq_handler(monkeypatch, queue_url)
    resp = handler(event_of(records), LambdaContext())
    assert reported(resp) == [seqs(records)[2]]
    b = handler.loop.last_batch
    assert (b.handled, b.captured, len(b.reported)) == (4, 0, 1)
    assert take_all(queue_url) == []


def test_s3_outage_during_claim_check_reports_the_record(quiet_env, queue_url, bucket, monkeypatch):
    records = [big_record(0, 300)]
    handler = dlq_handler(monkeypatch, queue_url, FAILURE_BUCKET=bucket)
    inject(handler, "s3", "PutObject", lambda **kw: error_response(503, "SlowDown"))
    resp = handler(event_of(records), LambdaContext())
    assert reported(resp) == seqs(records)
    assert take_all(queue_url) == []


def test_mixed_sizes_respect_the_batch_payload_limit(quiet_env, queue_url, bucket, monkeypatch):
    """Ten ~100 KB envelopes cannot share one 256 KiB SendMessageBatch call."""
    records = [big_record(i, 100) for i in range(10)]
    handler = dlq_handler(monkeypatch, queue_url, FAILURE_BUCKET=bucket)
    sizes = []
    handler.loop.policy.capture.sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **kw: sizes.append(sum(len(e["MessageBody"].encode()) for e in params["Entries"])),
    )
    assert handler(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    assert len(sizes) >= 4 and max(sizes) <= 262_144
    assert len(take_all(queue_url)) == 10
