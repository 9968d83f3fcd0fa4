"""Each policy's outcome on real-format events, and the conservation of records."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamkit import stream_handler
from streamkit.testing import LambdaContext
from tests.support.aws import take_all

from .helpers import Recorder, event_of, reported, seqs, user_records


def test_soft_fail_logs_and_continues(quiet_env, capsys, source):
    records = user_records(20, bad={3, 11}, source=source)
    rec = Recorder()
    handler = stream_handler("slack-notifier", rec, policy="soft-fail")
    resp = handler(event_of(records), LambdaContext())
    assert resp == {"batchItemFailures": []}
    assert len(rec.applied) == 18 and len(rec.calls) == 20
    b = handler.loop.last_batch
    assert (b.handled, b.dropped, b.captured, len(b.reported)) == (18, 2, 0, 0)
    out = capsys.readouterr().out
    assert out.count('"soft-fail policy moves on"') == 0  # masked? no: message kept, check below
    assert out.count("soft-fail policy moves on") == 2
    assert seqs(records)[3] in out and seqs(records)[11] in out


def test_hard_fail_reports_failing_record_and_rest_never_reruns_earlier(quiet_env, source):
    records = user_records(10, bad={4, 7}, source=source)
    rec = Recorder()
    handler = stream_handler("crm-sync", rec, policy="hard-fail")
    resp = handler(event_of(records), LambdaContext())
    assert reported(resp) == seqs(records)[4:]  # the failed record and what follows it
    assert handler.loop.last_batch.reported == set(range(4, 10))
    # Records 0-3 handled once; nothing after the failure was run.
    assert rec.calls == seqs(records)[:5]
    assert len(rec.applied) == 4

    # Lambda retries from the lowest reported sequence number: the "redelivery" is records[4:].
    # Our loop never re-runs 0-3; after the fix the rest goes through.
    rec2 = Recorder()
    fixed = stream_handler("crm-sync", lambda r: rec2.applied.append(r.sequence_number), policy="hard-fail")
    assert fixed(event_of(records[4:]), LambdaContext()) == {"batchItemFailures": []}
    assert rec2.applied == seqs(records)[4:]


def test_dlq_capture_writes_envelopes_and_continues(quiet_env, queue_url, monkeypatch, source):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "userstream-dev-search-indexer")
    records = user_records(25, bad={0, 9, 24}, source=source)
    rec = Recorder()
    handler = stream_handler("search-indexer", rec, policy="dlq-capture")
    ctx = LambdaContext(function_name="userstream-dev-search-indexer")
    resp = handler(event_of(records), ctx)
    assert resp == {"batchItemFailures": []}
    assert len(rec.applied) == 22
    msgs = take_all(queue_url)
    assert sorted(seqs([m["body"]["record"] for m in msgs])) == sorted(
        seqs(records)[i] for i in (0, 9, 24)
    )
    env = msgs[0]["body"]
    assert env["version"] == 1 and env["consumer"] == "search-indexer"
    assert env["error"]["type"] == "KeyError" and "fullname" in env["error"]["message"]
    assert "Traceback" in env["error"]["traceback"]
    assert env["attempts"] == 1 and env["payloadRef"] is None and env["capturedAt"].endswith("Z")
    assert env["source"] == {"functionName": "userstream-dev-search-indexer", "awsRequestId": ctx.aws_request_id}
    assert env["record"] in records  # the original record, unchanged
    assert msgs[0]["attributes"]["consumer"] == "search-indexer"
    assert msgs[0]["attributes"]["errorType"] == "KeyError"


def test_dlq_capture_many_failures_use_batches_of_ten(quiet_env, queue_url, monkeypatch):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(40, bad=set(range(0, 40, 2)))  # 20 failures
    handler = stream_handler("search-indexer", Recorder(), policy="dlq-capture")
    calls = []
    # Observe (not alter) the real calls to SQS.
    handler(event_of(records[:1]), LambdaContext())  # creates the client on first capture
    sqs = handler.loop.policy.capture.sqs
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **kw: calls.append(len(params["Entries"]))
    )
    take_all(queue_url)
    assert handler(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    assert calls == [10, 10]
    assert len(take_all(queue_url)) == 20


POLICY_NAMES = ["soft-fail", "hard-fail", "dlq-capture"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(min_value=0, max_value=30),
    bad=st.sets(st.integers(min_value=0, max_value=29), max_size=15),
    policy=st.sampled_from(POLICY_NAMES),
)
def test_conservation_of_records(quiet_env, queue_url, monkeypatch, source, n, bad, policy):
    """in = handled + captured + reported + dropped, and each bucket matches what is observable."""
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    take_all(queue_url)
    records = user_records(n, bad=bad, source=source)
    rec = Recorder()
    handler = stream_handler("c", rec, policy=policy)
    resp = handler(event_of(records), LambdaContext())
    b = handler.loop.last_batch
    captured = take_all(queue_url)
    assert b.handled + b.captured + len(b.reported) + b.dropped == n
    b.check()  # Batch's own conservation check agrees
    assert b.handled == len(rec.applied)
    assert len(captured) == b.captured
    assert reported(resp) == [seqs(records)[i] for i in sorted(b.reported)]
    failing = sorted(i for i in bad if i < n)
    if policy == "soft-fail":
        assert reported(resp) == [] and b.dropped == len(failing)
    elif policy == "hard-fail":
        first = failing[0] if failing else n
        assert b.reported == set(range(first, n)) and reported(resp) == seqs(records)[first:]
        assert b.handled == first
    else:
        assert reported(resp) == [] and b.captured == len(failing)
        assert set(seqs([m["body"]["record"] for m in captured])) == {
            seqs(records)[i] for i in failing
        }
