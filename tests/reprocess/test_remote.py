"""--remote and the reprocess Lambda's job kinds, on moto.

moto's Lambda needs Docker to run a function, so the Lambda *service* is stood in for by
``InProcessLambda`` (tests/reprocess/jobsupport.py): each ``lambda.Invoke`` of the reprocess
function runs the real ``handlers.reprocess.handler`` on a thread of this process, with a
Lambda-like context, and answers 202. The CLI's invokes, the parts' checkpoints in S3, the
follow loop and the handler's own continuation invokes are the real code against moto.
"""
from __future__ import annotations

import json

import boto3
import pytest

from handlers import reprocess as fn
from reprocess.checkpoints import S3Store, summary_key
from reprocess.job import Job
from streamkit.testing import LambdaContext
from tests.support.aws import create_consumer_queues, create_users_table

from .jobsupport import InProcessLambda, index_matches_table, load_table, user_item

FUNCTION = "userstream-dev-reprocess"


@pytest.fixture
def lambda_env(env, monkeypatch, tmp_path):
    import consumers.search_indexer as si

    boto3.client("s3").create_bucket(Bucket="jobs-bucket")
    monkeypatch.setenv("JOBS_BUCKET", "jobs-bucket")
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    monkeypatch.setenv("SEARCH_URL", url)
    monkeypatch.delenv("USER_SCHEMA_MODE", raising=False)
    create_users_table("users", stream=True)
    monkeypatch.setenv("USERS_TABLE", "users")
    create_consumer_queues("search-indexer")
    si._sinks.clear()
    yield {"url": url, "store": S3Store("jobs-bucket")}
    si._sinks.clear()


def cli(*argv: str) -> int:
    """The CLI in this process (the in-process Lambda lives here); it points structlog at
    this test's stderr, so the configuration is put back afterwards."""
    import structlog

    from reprocess.reprocess import main

    saved = structlog.get_config()
    try:
        return main(list(argv))
    finally:
        structlog.configure(**saved)


def test_remote_backfill_runs_one_invocation_per_segment_and_follows_them_in_s3(lambda_env, capsys):
    load_table("users", [user_item(i) for i in range(400)])
    with InProcessLambda(FUNCTION) as lam:
        code = cli("backfill", "--consumer", "search-indexer", "--segments", "4", "--remote", "--json")
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    summary = json.loads(out.out)
    assert summary["status"] == "succeeded" and summary["handled"] == 400 and summary["part_status"] == {"done": 4}
    parts = sorted(e["part"] for e in lam.events)
    assert parts == ["0", "1", "2", "3"] and all(e["jobId"] == summary["job_id"] for e in lam.events)
    assert lam.errors == [] and all(r["exit_code"] == 0 or r["status"] == "running" for r in lam.results)
    assert index_matches_table(lambda_env["url"], "users") == []
    stored = lambda_env["store"].get(summary_key(summary["job_id"]))
    assert stored["status"] == "succeeded" and stored["handled"] == 400


def test_a_part_out_of_time_hands_over_to_a_new_invocation(lambda_env, capsys):
    """An invocation whose time is up saves its part's checkpoint and invokes the function
    again with the same part and "continuation": 1; that one finishes the part. Nothing is
    lost or handled twice."""
    load_table("users", [user_item(i) for i in range(300)])
    with InProcessLambda(FUNCTION, defer=True) as lam:
        assert cli("backfill", "--consumer", "search-indexer", "--segments", "2", "--page-size", "20",
                   "--remote", "--detach") == 0
        job_id = capsys.readouterr().out.strip()
        first = lam.take_deferred()
        assert sorted(e["part"] for e in first) == ["0", "1"]
        for event in first:  # no time left beyond REPROCESS_MARGIN_MS
            out = fn.handler(event, LambdaContext(timeout_s=fn.MARGIN_MS / 1000, function_name=FUNCTION))
            assert out["continued"] == "continuation 1 invoked"
        paused = Job.load(lambda_env["store"], job_id).states()
        assert [(s.status, s.stopped_by) for s in paused] == [("paused", "time budget used")] * 2
        handover = list(lam.deferred)
        assert sorted((e["part"], e["continuation"], e["jobId"]) for e in handover) == [
            ("0", 1, job_id), ("1", 1, job_id)]
        lam.run_deferred()
    assert lam.errors == [] and all("continued" not in r for r in lam.results)
    job = Job.load(lambda_env["store"], job_id)
    assert [(s.status, s.invocations, s.counts.handled) for s in job.states()] == [
        ("done", 2, job.part_state("0").counts.handled), ("done", 2, job.part_state("1").counts.handled)]
    summary = job.summary()
    assert summary["handled"] == summary["taken"] == 300 and summary["status"] == "succeeded"
    assert index_matches_table(lambda_env["url"], "users") == []


def test_a_cancelled_job_stops_its_parts(lambda_env, capsys):
    load_table("users", [user_item(i) for i in range(50)])
    with InProcessLambda(FUNCTION, defer=True) as lam:
        assert cli("backfill", "--consumer", "search-indexer", "--segments", "2", "--remote", "--detach") == 0
        job_id = capsys.readouterr().out.strip()
        assert cli("jobs", "cancel", job_id) == 0
        lam.run_deferred()
    assert cli("jobs", "show", job_id, "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "cancelled" and summary["part_status"] == {"cancelled": 2}
    assert summary["taken"] == 0


def test_a_scheduled_rewind_runs_in_one_invocation_and_stores_its_summary(lambda_env):
    """The serverless.yml schedule's event: a relative range, no jobId."""
    for i in range(5):
        boto3.client("dynamodb").put_item(TableName="users", Item={"user_id": {"S": f"u{i}"},
                                                                   "fullname": {"S": f"Ada {i}"}})
    out = fn.handler({"kind": "rewind", "consumer": "search-indexer", "since": "30m", "window": "15m"},
                     LambdaContext(timeout_s=120, function_name=FUNCTION))
    assert out["exit_code"] == 0 and out["status"] == "succeeded" and out["handled"] == 5, out
    stored = lambda_env["store"].get(summary_key(out["job_id"]))
    assert stored["kind"] == "rewind" and stored["source"]["mode"] == "latest"


@pytest.mark.parametrize("event, message", [
    ({"kind": "rewind", "consumer": "search-indexer"}, "since is required"),
    ({"kind": "backfill", "consumer": "search-indexer", "segments": 0}, "segments must be an integer from 1 to 1000"),
    ({"kind": "backfill", "consumer": "search-indexer", "max": 5}, "unknown field(s) max"),
    ({"kind": "backfill", "consumer": "search-indexer", "part": "0"}, "a part needs the jobId"),
    ({"kind": "refill", "consumer": "search-indexer"}, "kind must be one of drain, backfill, rewind"),
])
def test_bad_job_events_exit_2(lambda_env, event, message):
    out = fn.handler(event, LambdaContext(timeout_s=60))
    assert out["exit_code"] == 2 and message in out["error"]


def test_without_a_jobs_bucket_remote_is_refused(lambda_env, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("JOBS_BUCKET")
    monkeypatch.delenv("FAILURE_BUCKET", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli("backfill", "--consumer", "search-indexer", "--remote") == 2
    assert "--remote runs the job in the reprocess Lambda" in capsys.readouterr().err
