"""Deadline, transient retries, malformed events, configuration errors, logs and metrics."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamkit import ConfigError, MalformedEventError, StreamRecord, TransientError, stream_handler
from streamkit.testing import LambdaContext, make_record
from tests.support.aws import take_all

from .helpers import (
    Recorder,
    drop_sequence_number,
    edit_change,
    event_of,
    reported,
    seqs,
    taking,
    user_records,
)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


# --- deadline ------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["soft-fail", "hard-fail", "dlq-capture"])
def test_deadline_stops_and_reports_the_rest(quiet_env, queue_url, monkeypatch, clock, policy, source):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    monkeypatch.setenv("DEADLINE_MARGIN_MS", "2000")
    records = user_records(10, source=source)
    rec = Recorder()
    handler = stream_handler("c", taking(1.0, clock, rec), policy=policy)
    # 10 s left, one second gone per record: after 8 records fewer than 2 s remain.
    resp = handler(event_of(records), clock.context(10_000))
    b = handler.loop.last_batch
    assert b.stopped_by == "deadline"
    assert len(rec.applied) == b.handled == 8
    assert reported(resp) == seqs(records)[8:] and b.reported == {8, 9}
    assert b.handled + len(b.reported) == 10


def test_the_context_is_asked_for_the_deadline_once_per_batch(quiet_env, clock):
    asked = []
    ctx = clock.context(60_000)
    remaining = ctx.get_remaining_time_in_millis
    ctx.get_remaining_time_in_millis = lambda: asked.append(1) or remaining()
    handler = stream_handler("c", Recorder(), policy="soft-fail")
    assert handler(event_of(user_records(50)), ctx) == {"batchItemFailures": []}
    assert len(asked) == 1 and handler.loop.last_batch.handled == 50


def test_deadline_still_flushes_pending_captures(quiet_env, queue_url, monkeypatch, clock, source):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(10, bad={1, 2}, source=source)
    handler = stream_handler("c", taking(1.0, clock, Recorder()), policy="dlq-capture")
    resp = handler(event_of(records), clock.context(7_000))  # 2 s margin: 5 records fit
    b = handler.loop.last_batch
    assert b.captured == 2 and len(take_all(queue_url)) == 2
    assert reported(resp) == seqs(records)[5:] and b.reported == {5, 6, 7, 8, 9}
    assert b.handled + b.captured + len(b.reported) == 10


def test_no_retry_wait_past_the_deadline(quiet_env):
    calls = []

    def always_throttled(record):
        calls.append(1)
        raise TransientError("slow down", retry_after=30)

    handler = stream_handler("c", always_throttled, policy="hard-fail")
    records = user_records(2)
    resp = handler(event_of(records), LambdaContext(timeout_s=10))
    assert len(calls) == 1  # a 30 s Retry-After does not fit in 10 s: policy applies at once
    assert reported(resp) == seqs(records) and handler.loop.last_batch.reported == {0, 1}


# --- transient retries -----------------------------------------------------------------
def test_transient_errors_are_retried_then_succeed(quiet_env, source):
    attempts: dict[str, int] = {}

    def flaky(record):
        n = attempts[record.sequence_number] = attempts.get(record.sequence_number, 0) + 1
        if n < 3:
            raise TransientError("429")

    handler = stream_handler("c", flaky, policy="hard-fail")
    assert handler(event_of(user_records(3, source=source)), LambdaContext()) == {"batchItemFailures": []}
    b = handler.loop.last_batch
    assert b.handled == 3 and b.retried == 6 and set(attempts.values()) == {3}


def test_botocore_style_throttling_is_transient_and_bounded(quiet_env, monkeypatch):
    from botocore.exceptions import ClientError

    monkeypatch.setenv("MAX_TRANSIENT_RETRIES", "3")
    calls = []

    def throttled(record):
        calls.append(1)
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")

    handler = stream_handler("c", throttled, policy="soft-fail")
    handler(event_of(user_records(1)), LambdaContext())
    assert len(calls) == 4  # first try + 3 retries, then the policy
    assert handler.loop.last_batch.dropped == 1


def test_permanent_errors_are_not_retried(quiet_env):
    rec = Recorder()
    handler = stream_handler("c", rec, policy="soft-fail")
    handler(event_of(user_records(1, bad={0})), LambdaContext())
    assert len(rec.calls) == 1 and handler.loop.last_batch.retried == 0


# --- malformed events ---------------------------------------------------------------------
@pytest.mark.parametrize("event", [{}, {"Records": None}, [], "x", {"records": []}])
def test_event_without_records_is_a_clear_error(quiet_env, event):
    handler = stream_handler("c", Recorder(), policy="soft-fail")
    with pytest.raises(MalformedEventError, match="'Records' list"):
        handler(event, LambdaContext())


def test_empty_batch_succeeds(quiet_env):
    handler = stream_handler("c", Recorder(), policy="hard-fail")
    assert handler({"Records": []}, LambdaContext()) == {"batchItemFailures": []}


def _unknown_event_name(seq="900", source="dynamodb"):
    r = make_record("INSERT", keys={"user_id": "x"}, new_image={"user_id": "x", "fullname": "X"}, sequence_number=seq,
                    source=source)
    return edit_change(r, lambda change: change.update(eventName="UPSERT"))


def test_unknown_event_name_goes_through_the_policy(quiet_env, queue_url, monkeypatch, source):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    good = user_records(2, source=source)
    bad = _unknown_event_name(source=source)
    # hard-fail: reported (identifiable), shard blocks on it
    h = stream_handler("c", Recorder(), policy="hard-fail")
    assert reported(h(event_of(good + [bad]), LambdaContext())) == ["900"]
    # dlq-capture: captured with a clear error type
    d = stream_handler("c", Recorder(), policy="dlq-capture")
    assert d(event_of(good + [bad]), LambdaContext()) == {"batchItemFailures": []}
    (msg,) = take_all(queue_url)
    assert msg["body"]["error"]["type"] == "MalformedRecordError"
    assert "UPSERT" in msg["body"]["error"]["message"] and msg["body"]["record"] == bad


def test_record_without_sequence_number_is_captured_by_dlq(quiet_env, queue_url, monkeypatch, source):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(3, source=source)
    drop_sequence_number(records[1])
    h = stream_handler("c", Recorder(), policy="dlq-capture")
    assert h(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    (msg,) = take_all(queue_url)
    assert msg["body"]["error"]["type"] == "MalformedRecordError"
    assert msg["body"]["record"] == records[1]


def test_unidentifiable_record_fails_the_whole_batch_under_hard_fail(quiet_env, source):
    records = user_records(3, source=source)
    del records[1][source]
    h = stream_handler("c", Recorder(), policy="hard-fail")
    with pytest.raises(MalformedEventError, match="no sequence number"):
        h(event_of(records), LambdaContext())


def test_unidentifiable_record_after_a_reported_one_is_covered(quiet_env, source):
    """Lambda resumes from the lowest reported record, so a later unidentifiable one is safe."""
    records = user_records(4, bad={1}, source=source)
    drop_sequence_number(records[3])
    h = stream_handler("c", Recorder(), policy="hard-fail")
    assert reported(h(event_of(records), LambdaContext())) == seqs(records[:3])[1:]
    assert h.loop.last_batch.reported == {1, 2, 3}


def test_unidentifiable_record_under_soft_fail_is_logged_not_silent(quiet_env, capsys):
    records = user_records(2)
    records[0]["dynamodb"] = "garbage"
    h = stream_handler("c", Recorder(), policy="soft-fail")
    assert h(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert "no 'dynamodb' object" in out and h.loop.last_batch.dropped == 1


def test_bad_image_value_is_a_record_failure_not_a_crash(quiet_env, source):
    records = user_records(2, source=source)
    edit_change(records[0], lambda change: change["dynamodb"]["NewImage"].update(logins={"N": "not-a-number"}))

    def reads_logins(record):
        record.new_image["logins"]

    h = stream_handler("c", reads_logins, policy="hard-fail")
    assert reported(h(event_of(records), LambdaContext())) == seqs(records)
    # A handler that never reads the bad attribute is not stopped by it (decoded on read only).
    h = stream_handler("c", Recorder(), policy="hard-fail")
    assert reported(h(event_of(records), LambdaContext())) == []


# --- configuration ---------------------------------------------------------------------------
def test_unknown_policy_names_the_fix(quiet_env):
    with pytest.raises(ConfigError, match="unknown failure policy 'dlq'.*soft-fail, hard-fail, dlq-capture"):
        stream_handler("c", Recorder(), policy="dlq")


def test_missing_policy_names_the_env_var(quiet_env):
    with pytest.raises(ConfigError, match="FAILURE_POLICY"):
        stream_handler("c", Recorder())


def test_policy_from_env(quiet_env, monkeypatch):
    monkeypatch.setenv("FAILURE_POLICY", "hard-fail")
    assert stream_handler("c", Recorder()).loop.policy.name == "hard-fail"


def test_dlq_capture_without_queue_fails_at_cold_start(quiet_env):
    with pytest.raises(ConfigError, match="FAILURE_QUEUE_URL"):
        stream_handler("c", Recorder(), policy="dlq-capture")


@pytest.mark.parametrize("var,value", [("MAX_TRANSIENT_RETRIES", "many"), ("DEADLINE_MARGIN_MS", "-5"),
                                       ("FAILURE_MAX_MESSAGE_BYTES", "10")])
def test_bad_numeric_settings_fail_at_cold_start(quiet_env, monkeypatch, var, value):
    monkeypatch.setenv("FAILURE_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        stream_handler("c", Recorder(), policy="dlq-capture")


def test_config_error_at_import_of_a_handler_module(tmp_path):
    mod = tmp_path / "my_handler.py"
    mod.write_text("from streamkit import stream_handler\nhandler = stream_handler('c', lambda r: None)\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{tmp_path}", "FAILURE_POLICY": "sometimes"}
    proc = subprocess.run([sys.executable, "-c", "import my_handler"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and "unknown failure policy 'sometimes'" in proc.stderr


# --- logs and metrics ----------------------------------------------------------------------
def test_failure_logs_are_json_with_context_and_pii_masked(quiet_env, capsys, source):
    def boom(record):
        raise ValueError(f"cannot sync {record.new_image['email']}")

    records = user_records(1, source=source)
    h = stream_handler("crm-sync", boom, policy="soft-fail")
    ctx = LambdaContext()
    h(event_of(records), ctx)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    log = next(line for line in lines if line.get("level") == "error")
    assert log["consumer"] == "crm-sync" and log["policy"] == "soft-fail"
    assert log["aws_request_id"] == ctx.aws_request_id
    assert log["sequence_number"] == seqs(records)[0] and log["event_name"] == "INSERT"
    assert log["event_id"] == StreamRecord(records[0]).event_id
    assert log["keys"] == {"user_id": "u00000"}
    text = json.dumps(log)
    assert "user0@example.com" not in text and "u***@example.com" in text


def test_metrics_are_emitted_as_emf_per_consumer(quiet_env, capsys, source):
    h = stream_handler("slack-notifier", Recorder(), policy="soft-fail")
    h(event_of(user_records(5, bad={2}, source=source)), LambdaContext())
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emf) == 1
    doc = emf[0]
    assert doc["consumer"] == "slack-notifier"
    assert doc["processed"] == [4.0] and doc["failed"] == [1.0] and doc["reported_for_retry"] == [0.0]
    names = {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"processed", "failed", "captured", "retried", "reported_for_retry", "dropped"}


# --- cold start cost -------------------------------------------------------------------------
def _modules_after(code: str, env_extra: dict) -> set[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1", **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1]
    return set(json.loads(out))


def test_soft_fail_happy_path_imports_no_boto3_and_no_structlog():
    mods = _modules_after(
        "from streamkit import stream_handler\n"
        "from streamkit.testing import make_record, make_event\n"
        "h = stream_handler('c', lambda r: r.new_image, policy='soft-fail')\n"
        "import streamkit.testing as t\n",
        {"POWERTOOLS_METRICS_DISABLED": "true"},
    )
    # streamkit.testing serializes images with streamkit.ddbjson: no boto3.
    assert "boto3" not in mods and "botocore.session" not in mods and "botocore.client" not in mods
    assert "structlog" not in mods


def test_soft_fail_failure_path_imports_no_boto3_no_structlog_no_powertools():
    mods = _modules_after(
        "from streamkit import stream_handler\n"
        "from streamkit.testing import make_record, make_event\n"
        "h = stream_handler('c', lambda r: r.new_image['fullname'], policy='soft-fail')\n"
        "h(make_event([make_record(keys={'user_id': 'u1'}, new_image={'user_id': 'u1'})]))\n",
        {},
    )
    # failure lines and EMF are rendered by streamkit itself: the first failure imports nothing heavy
    assert "boto3" not in mods and "botocore.session" not in mods
    assert "structlog" not in mods and "aws_lambda_powertools" not in mods


# --- the Kinesis record format ----------------------------------------------------------------
def test_undecodable_kinesis_data_is_a_record_failure_reported_by_its_sequence_number(quiet_env, queue_url,
                                                                                      monkeypatch):
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    records = user_records(3, source="kinesis")
    records[1]["kinesis"]["data"] = "not base64 json!"
    h = stream_handler("c", Recorder(), policy="hard-fail")
    assert reported(h(event_of(records), LambdaContext())) == seqs(records)[1:]  # Lambda resumes at the first
    d = stream_handler("c", Recorder(), policy="dlq-capture")
    assert d(event_of(records), LambdaContext()) == {"batchItemFailures": []}
    (msg,) = take_all(queue_url)
    assert msg["body"]["error"]["type"] == "MalformedRecordError" and "base64" in msg["body"]["error"]["message"]
    assert msg["body"]["record"] == records[1]  # the record as Lambda delivered it


def test_kinesis_record_reads_like_a_dynamodb_streams_record():
    """Same change, two sources: handle_record cannot tell them apart, except by what
    identifies the record to Lambda (sequence number, ARN) and the creation-time precision."""
    item = {"user_id": "u1", "email": "ada@example.com", "logins": 3, "score": __import__("decimal").Decimal("1.5")}
    ddb = StreamRecord(make_record("MODIFY", keys={"user_id": "u1"}, new_image=item, old_image={"user_id": "u1"},
                                   event_id="e-1", created=1_764_000_000.25))
    kin = StreamRecord(make_record("MODIFY", keys={"user_id": "u1"}, new_image=item, old_image={"user_id": "u1"},
                                   event_id="e-1", created=1_764_000_000.25, source="kinesis"))
    assert (type(ddb).__name__, type(kin).__name__) == ("StreamRecord", "KinesisStreamRecord")
    assert isinstance(kin, StreamRecord) and (ddb.source, kin.source) == ("dynamodb", "kinesis")
    for field in ("event_id", "event_name", "keys", "new_image", "old_image"):
        assert getattr(kin, field) == getattr(ddb, field), field
    assert kin.sequence_number == kin.raw["kinesis"]["sequenceNumber"] and kin.source_arn.startswith("arn:aws:kinesis:")
    assert ddb.approximate_creation_time.timestamp() == 1_764_000_000  # whole seconds on DynamoDB Streams
    assert kin.approximate_creation_time.timestamp() == 1_764_000_000.25  # microseconds on Kinesis
    assert ddb.change_order.startswith("01764000000000000.") and kin.change_order == "01764000000250000." + "0" * 40
    assert kin.size_bytes > 0 and kin.change["tableName"] == "users"
