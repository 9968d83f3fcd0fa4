"""Backfill and rewind as operator API jobs (``reprocess.checkpointed``), against moto (server
mode): the same confirmation, progress, cancel, history and caller identity as a drain.

Local jobs run on the API's threads with the real runner and the real search-indexer (its
SQLite index). The Lambda path uses ``tests.reprocess.jobsupport.InProcessLambda``, the
in-process stand-in for the Lambda *service* that tests/reprocess uses for ``--remote``:
each ``lambda.Invoke`` of the reprocess function runs the real ``handlers.reprocess.handler``
on a thread here and answers 202 (moto's Lambda would need Docker). The API's invoke, the
coordinator's fan-out invokes, the parts' checkpoints and the cancel marker in S3 are the real
code against moto.
"""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from reprocess.checkpoints import S3Store
from reprocess.job import Job
from streamkit.testing import LambdaContext
from streamkit.timefmt import iso
from tests.reprocess.jobsupport import InProcessLambda, index_matches_table, load_table, user_item
from tests.support.aws import create_consumer_queues, create_users_table, stream_records

from .test_api import IAM_ARN, iam_request, wait_job

BUCKET = "jobs-bucket"
FUNCTION = "userstream-dev-reprocess"


@pytest.fixture
def table(env, monkeypatch):
    """The users table (with its stream) the API's jobs read, a jobs bucket, search-indexer's queues."""
    import consumers.search_indexer as si

    arn = create_users_table("users", stream=True)
    monkeypatch.setenv("USERS_TABLE", "users")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    create_consumer_queues("search-indexer")
    si._sinks.clear()
    yield arn
    si._sinks.clear()


def make_client(**config):
    from opsapi import create_app

    app = create_app({"JOBS_BUCKET": BUCKET, "LEDGER_TTL_S": 0, **config})
    return app.test_client()


def ask(client, path: str, body: dict, **kw) -> dict:
    resp = client.post(path, json=body, **kw)
    assert resp.status_code == 428, resp.get_json()
    return resp.get_json()["confirm"]


def start(client, path: str, body: dict, count: int, **kw) -> dict:
    resp = client.post(path, json={**body, "confirmCount": count}, **kw)
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()


# ---- backfill on the API's threads -------------------------------------------------------------------

def test_a_backfill_confirms_the_tables_count_and_rebuilds_the_index_with_progress_to_the_total(table, env):
    load_table("users", [user_item(i) for i in range(300)])
    client = make_client()
    path = "/consumers/search-indexer/jobs/backfill"
    confirm = ask(client, path, {"segments": 3}, environ_base=iam_request())
    assert confirm["count"] == 300 and confirm["what"].startswith("items in users (DynamoDB's ItemCount")
    assert confirm["request"] == {"segments": 3}
    assert client.get("/jobs").get_json()["jobs"] == []  # nothing ran before the confirmation
    job = start(client, path, {"segments": 3}, confirm["count"], environ_base=iam_request())
    assert job["kind"] == "backfill" and job["total"] == 300 and job["caller"]["arn"] == IAM_ARN
    done = wait_job(client, job["jobId"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["done"] == done["progress"]["total"] == 300 and done["progress"]["percent"] == 100
    s = done["summary"]
    assert s["taken"] == s["handled"] == 300 and s["captured"] == 0 and s["part_status"] == {"done": 3}
    assert index_matches_table(env_search_url(), "users") == []
    # the checkpoints sit beside the job's record, under the API's job id
    assert [p.status for p in Job.load(S3Store(BUCKET), job["jobId"]).states()] == ["done"] * 3


def env_search_url() -> str:
    import os

    return os.environ["SEARCH_URL"]


def test_cancel_stops_a_backfill_at_a_checkpoint_says_who_and_a_resume_finishes_it(table, env, capsys):
    load_table("users", [user_item(i) for i in range(100)])
    gate, started = threading.Event(), threading.Event()

    from consumers.search_indexer import handle_record as index_it

    def slow(record):  # the first record waits for the test; the rest run as the consumer's
        started.set()
        assert gate.wait(60)
        index_it(record)

    client = make_client(DRAIN_OPTIONS={"handle_record": slow})
    path = "/consumers/search-indexer/jobs/backfill"
    job = start(client, path, {"pageSize": 10}, 100, environ_base=iam_request())
    assert started.wait(60)
    running = client.get(f"/jobs/{job['jobId']}").get_json()
    assert running["status"] == "running" and running["progress"]["total"] == 100
    conflict = client.post(path, json={"dryRun": True})
    assert conflict.status_code == 409 and conflict.get_json()["jobId"] == job["jobId"]
    cancel = client.post(f"/jobs/{job['jobId']}/cancel", json={}, environ_base=iam_request())
    assert cancel.status_code == 200 and cancel.get_json()["cancelRequested"]["by"]["arn"] == IAM_ARN
    gate.set()  # the page in hand finishes and is checkpointed; no other page is read
    done = wait_job(client, job["jobId"])
    assert done["status"] == "cancelled" and done["stoppedBy"].startswith(f"cancelled by {IAM_ARN} at "), done
    assert done["summary"]["taken"] == done["progress"]["done"] == 10 and done["summary"]["handled"] == 10
    part = Job.load(S3Store(BUCKET), job["jobId"]).part_state("0")
    assert part.status == "cancelled" and part.checkpoint["lastKey"] and part.counts.taken == 10
    assert len(index_matches_table(env_search_url(), "users")) == 90  # the rest is not indexed yet

    import structlog

    from reprocess.reprocess import main

    saved = structlog.get_config()
    try:  # the operator resumes it: the cancel is withdrawn, the segment goes on from its checkpoint
        code = main(["backfill", "--consumer", "search-indexer", "--resume", job["jobId"], "--json",
                     "--checkpoints", f"s3://{BUCKET}"])
    finally:
        structlog.configure(**saved)
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert "cancel withdrawn; part(s) 0 go on from their checkpoints" in out.err
    import json

    resumed = json.loads(out.out)
    assert resumed["status"] == "succeeded" and resumed["taken"] == resumed["handled"] == 100  # none twice
    assert index_matches_table(env_search_url(), "users") == []
    for c in (client, make_client()):  # this API process and a restarted one both see it went on
        after = c.get(f"/jobs/{job['jobId']}").get_json()
        assert after["status"] == "succeeded" and after["progress"]["done"] == 100, after
        assert after["caller"]["arn"] == IAM_ARN and after["finishedAt"] and "cancelRequested" not in after


def test_a_backfill_dry_run_needs_no_confirmation_and_scans_nothing(table, env):
    load_table("users", [user_item(i) for i in range(20)])
    client = make_client()
    resp = client.post("/consumers/search-indexer/jobs/backfill", json={"segments": 2, "rate": 50, "dryRun": True})
    assert resp.status_code == 202, resp.get_json()
    done = wait_job(client, resp.get_json()["jobId"])
    assert done["status"] == "succeeded" and done["summary"]["status"] == "planned"
    assert done["summary"]["estimate"]["items"] == 20 and done["progress"]["done"] == done["total"] == 20
    assert "taken" not in done["summary"] and not index_exists()  # nothing was scanned or indexed


def index_exists() -> bool:
    from pathlib import Path

    from consumers.sinks.sqlite_fts import path_from_url

    return Path(path_from_url(env_search_url())).exists()


# ---- rewind on the API's threads -----------------------------------------------------------------------

def put(i: int, **extra) -> None:
    boto3.resource("dynamodb").Table("users").put_item(Item={**user_item(i), **extra})


def test_a_rewind_handles_exactly_the_window_it_confirmed(table, env):
    from reprocess import rewind

    for i in range(3):
        put(i)  # before the range
    time.sleep(0.2)
    since = datetime.now(UTC)
    time.sleep(0.05)
    for i in range(3, 8):
        put(i)
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.2)
    for i in range(8, 10):
        put(i)  # after the range
    expected = [r["eventID"] for r in stream_records(table)
                if since <= rewind.SOURCES["dynamodb"].created(r) < until]
    assert len(expected) == 5

    seen: list = []
    lock = threading.Lock()

    def record_it(record):
        with lock:
            seen.append(record.event_id)

    client = make_client(DRAIN_OPTIONS={"handle_record": record_it})
    body = {"since": iso(since), "until": iso(until), "window": "1s", "mode": "replay"}
    confirm = ask(client, "/consumers/search-indexer/jobs/rewind", body, environ_base=iam_request())
    windows = rewind.windows(since, until, 1)
    assert confirm["count"] == windows and "1 shard lineage(s), replay mode" in confirm["what"]
    job = start(client, "/consumers/search-indexer/jobs/rewind", confirm["request"], confirm["count"],
                environ_base=iam_request())
    done = wait_job(client, job["jobId"])
    assert done["status"] == "succeeded", done
    assert seen == expected  # every record of the window once, in stream order; none outside it
    s = done["summary"]
    assert s["taken"] == s["handled"] == 5 and s["skipped"] == 3 and s["by_event"] == {"INSERT": 5}
    assert done["progress"]["done"] == done["progress"]["total"] == windows
    assert done["caller"]["arn"] == IAM_ARN and done["title"] == "rewind the stream"


def test_a_rewinds_relative_times_are_fixed_when_the_request_is_read(table):
    client = make_client()
    before = datetime.now(UTC)
    confirm = ask(client, "/consumers/search-indexer/jobs/rewind", {"since": "10m", "window": "5m"})
    after = datetime.now(UTC)
    since, until = (datetime.fromisoformat(confirm["request"][k].replace("Z", "+00:00")) for k in ("since", "until"))
    assert before - timedelta(minutes=10, seconds=1) <= since <= after - timedelta(minutes=10)
    assert before - timedelta(seconds=1) <= until <= after and confirm["request"]["window"] == 300
    assert confirm["count"] == 2  # two windows of 5 minutes
    time.sleep(1.1)  # what the operator confirmed is what runs, however late the confirmation comes
    job = start(client, "/consumers/search-indexer/jobs/rewind", confirm["request"], confirm["count"])
    assert job["request"] == confirm["request"]
    wait_job(client, job["jobId"])


# ---- bad requests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, body, needle", [
    ("backfill", {"segments": 0}, "segments must be an integer from 1 to 1000"),
    ("backfill", {"rate": -5}, "rate must be a number of read capacity units per second above 0"),
    ("backfill", {"pageSize": 20_000}, "pageSize must be an integer from 1 to 10000"),
    ("backfill", {"dryRun": "yes"}, "dryRun must be true or false"),
    ("backfill", {"max": 5}, "unknown field(s) max; allowed: segments, rate, pageSize, dryRun"),
    ("backfill", {"segments": 2, "confirmCount": 10**12 + 1}, "confirmCount must be an integer from 1 to"),
    ("rewind", {}, "since is required"),
    ("rewind", {"since": "yesterday"}, "since must be an ISO-8601 time (2026-11-29T17:00:00Z) or a duration ago"),
    ("rewind", {"since": "10m", "until": "20m"}, "must be after since"),
    ("rewind", {"since": "10m", "window": "0"}, "window must be an integer from 1 to 604800"),
    ("rewind", {"since": "10m", "window": "soon"}, "window must be a duration like 900, 90s, 15m"),
    ("rewind", {"since": "10m", "mode": "fast"}, "mode must be one of"),
    ("rewind", {"since": "10m", "segments": 2}, "unknown field(s) segments; allowed: since, until, window, mode"),
    ("rewind", {"since": "25h"}, "is before the oldest record the stream can hold"),
])
def test_bad_backfill_and_rewind_bodies_are_400_naming_the_fix(table, kind, body, needle):
    client = make_client()
    resp = client.post(f"/consumers/search-indexer/jobs/{kind}", json=body)
    assert resp.status_code == 400, resp.get_json()
    assert needle in resp.get_json()["error"]
    assert client.get("/jobs").get_json()["jobs"] == []


def test_a_rewind_until_in_the_future_is_400(table):
    client = make_client()
    later = iso(datetime.now(UTC) + timedelta(hours=1))
    resp = client.post("/consumers/search-indexer/jobs/rewind", json={"since": "10m", "until": later})
    assert resp.status_code == 400 and "is in the future" in resp.get_json()["error"]


def test_a_backfill_without_a_users_table_is_400_naming_it(env, monkeypatch):
    monkeypatch.delenv("USERS_TABLE", raising=False)
    create_consumer_queues("search-indexer")
    from opsapi import create_app

    resp = create_app().test_client().post("/consumers/search-indexer/jobs/backfill", json={})
    assert resp.status_code == 400 and "set USERS_TABLE" in resp.get_json()["error"]


# ---- in Lambda: the coordinator fans out, the parts report to S3 -------------------------------------------

@pytest.fixture
def in_lambda(table, monkeypatch):
    """The reprocess function's own environment (the handler reads it in this process)."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
    monkeypatch.setenv("JOBS_BUCKET", BUCKET)
    return {"REPROCESS_FUNCTION_NAME": FUNCTION}


def test_in_lambda_a_backfill_fans_out_per_segment_and_its_history_survives_a_reload(in_lambda, env):
    load_table("users", [user_item(i) for i in range(200)])
    client = make_client(**in_lambda)
    with InProcessLambda(FUNCTION) as lam:
        confirm = ask(client, "/consumers/search-indexer/jobs/backfill", {"segments": 4})
        job = start(client, "/consumers/search-indexer/jobs/backfill", {"segments": 4}, confirm["count"],
                    environ_base=iam_request())
        assert job["runner"] == "lambda" and job["status"] in ("submitted", "running")  # it may have started
    assert lam.errors == []
    api_event, *parts = lam.events
    assert api_event == {"kind": "backfill", "consumer": "search-indexer", "jobId": job["jobId"], "total": 200,
                         "request": {"segments": 4}}
    assert sorted(e["part"] for e in parts) == ["0", "1", "2", "3"] and {e["jobId"] for e in parts} == {job["jobId"]}
    assert all("request" not in e for e in parts)  # a part is the --remote shape: reprocess.remote runs it
    assert index_matches_table(env_search_url(), "users") == []

    reloaded = make_client(**in_lambda)  # another container: nothing in memory
    done = reloaded.get(f"/jobs/{job['jobId']}").get_json()
    assert done["status"] == "succeeded" and done["caller"]["arn"] == IAM_ARN, done
    assert done["progress"]["done"] == done["progress"]["total"] == 200
    assert done["summary"]["handled"] == 200 and done["summary"]["part_status"] == {"done": 4}
    history = reloaded.get("/jobs").get_json()["jobs"]
    assert [(j["jobId"], j["kind"], j["status"]) for j in history] == [(job["jobId"], "backfill", "succeeded")]


def test_in_lambda_a_cancel_stops_the_parts_and_says_who(in_lambda, env):
    from handlers import reprocess as fn

    load_table("users", [user_item(i) for i in range(60)])
    client = make_client(**in_lambda)
    with InProcessLambda(FUNCTION, defer=True) as lam:
        job = start(client, "/consumers/search-indexer/jobs/backfill", {"segments": 3}, 60)
        (api_event,) = lam.take_deferred()
        results: list = []
        coordinator = threading.Thread(target=lambda: results.append(
            fn.handler(api_event, LambdaContext(timeout_s=120, function_name=FUNCTION))))
        coordinator.start()  # it plans, invokes the 3 parts (held), and follows them
        deadline = time.monotonic() + 60
        while len(lam.deferred) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(e["part"] for e in lam.deferred) == ["0", "1", "2"]
        running = client.get(f"/jobs/{job['jobId']}").get_json()
        assert running["status"] in ("submitted", "running")
        cancel = client.post(f"/jobs/{job['jobId']}/cancel", json={}, environ_base=iam_request())
        assert cancel.status_code == 200
        lam.run_deferred()  # the parts start, find cancel.json and stop
        coordinator.join(120)
    assert lam.errors == [] and not coordinator.is_alive()
    summary = results[0]
    assert summary["status"] == "cancelled" and summary["part_status"] == {"cancelled": 3} and summary["taken"] == 0
    done = make_client(**in_lambda).get(f"/jobs/{job['jobId']}").get_json()
    assert done["status"] == "cancelled" and done["stoppedBy"].startswith(f"cancelled by {IAM_ARN} at "), done
    assert done["cancelRequested"]["by"]["arn"] == IAM_ARN
    assert not index_exists()  # no part handled anything


def test_in_lambda_once_the_coordinator_has_gone_the_api_reads_progress_from_the_parts(in_lambda, env, monkeypatch):
    """The coordinating invocation stops following when its own time runs out (the parts go
    on): its status.json says running; once nobody updates it, any API container answers from
    the parts' checkpoints, up to their end."""
    from handlers import reprocess as fn
    from reprocess import jobstore

    load_table("users", [user_item(i) for i in range(80)])
    client = make_client(**in_lambda)
    with InProcessLambda(FUNCTION, defer=True) as lam:
        job = start(client, "/consumers/search-indexer/jobs/backfill", {"segments": 2}, 80)
        (api_event,) = lam.take_deferred()
        short = LambdaContext(timeout_s=fn.MARGIN_MS / 1000 + 5, function_name=FUNCTION)  # 5 s past the margin
        out = fn.handler(api_event, short)  # plans, invokes both parts (held), has no time to follow them
        assert out["status"] == "running" and "the parts go on" in " ".join(out["notes"]), out
        running = make_client(**in_lambda).get(f"/jobs/{job['jobId']}").get_json()
        assert running["status"] == "running" and running["finishedAt"] is None
        assert sorted(e["part"] for e in lam.deferred) == ["0", "1"]
        lam.run_deferred()
    assert lam.errors == []
    monkeypatch.setattr(jobstore, "STALE_STATUS_S", 0.0)  # its status.json is not kept up to date any more
    done = make_client(**in_lambda).get(f"/jobs/{job['jobId']}").get_json()
    assert done["status"] == "succeeded" and done["summary"]["handled"] == 80, done
    assert done["progress"]["done"] == done["progress"]["total"] == 80
    assert index_matches_table(env_search_url(), "users") == []


# ---- jobs started outside the API --------------------------------------------------------------------------

def test_history_shows_a_backfill_started_from_the_cli_from_its_manifest(table, env, capsys):
    import json

    import structlog

    from reprocess.reprocess import main

    load_table("users", [user_item(i) for i in range(30)])
    client = make_client(DRAIN_OPTIONS={"handle_record": lambda record: None})
    api_job = client.post("/consumers/search-indexer/jobs/backfill", json={"dryRun": True}).get_json()
    wait_job(client, api_job["jobId"])
    saved = structlog.get_config()
    try:
        assert main(["backfill", "--consumer", "search-indexer", "--segments", "2", "--json",
                     "--checkpoints", f"s3://{BUCKET}"]) == 0
        assert main(["backfill", "--consumer", "search-indexer", "--job-id", "nightly-1", "--json",
                     "--checkpoints", f"s3://{BUCKET}"]) == 0
    finally:
        structlog.configure(**saved)
    cli_job = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")["job_id"]

    history = make_client().get("/jobs").get_json()["jobs"]
    # time-ordered ids newest first (the CLI's unnamed job is newer than the API's), then named ones
    assert [j["jobId"] for j in history] == [cli_job, api_job["jobId"], "nightly-1"]
    cli = history[0]
    assert (cli["kind"], cli["title"], cli["consumer"], cli["runner"], cli["status"]) == (
        "backfill", "backfill from the table", "search-indexer", "cli", "succeeded")
    assert cli["progress"]["done"] == cli["progress"]["total"] == 30 and cli["request"] == {"segments": 2}
    assert cli["caller"]["display"] == "reprocess.py (no caller recorded)" and "reprocess.py jobs show" in cli["note"]
    assert make_client().get("/jobs/nightly-1").get_json()["summary"]["handled"] == 30
