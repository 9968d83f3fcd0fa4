"""A run started by the operator API (a jobId) keeps its status in the jobs bucket, and stops
when a cancel request appears there."""
from __future__ import annotations

import boto3

from handlers import reprocess as fn
from reprocess.jobstore import JobStore, new_job_id
from streamkit.testing import LambdaContext
from tests.support.aws import queue_count
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item


def test_job_status_and_summary_are_stored_where_the_api_reads_them(queues, monkeypatch):
    failures, _ = queues
    boto3.client("s3").create_bucket(Bucket="claims")
    monkeypatch.setenv("FAILURE_BUCKET", "claims")
    capture(failures, [envelope(insert(user_item(i))) for i in range(2)])
    job_id = new_job_id()
    out = fn.handler({"consumer": "search-indexer", "dryRun": True, "jobId": job_id}, LambdaContext(timeout_s=120))
    stored = JobStore("claims", boto3.client("s3")).load(job_id)
    assert stored["status"] == "succeeded" and stored["summary"]["taken"] == out["taken"] == 2
    assert stored["stoppedBy"] == "queue empty" and stored["finishedAt"] and stored["startedAt"]
    assert queue_count(failures) == 2  # a dry run


def test_a_cancel_request_in_the_bucket_stops_the_run_before_it_takes_anything(queues, monkeypatch, users_table):
    failures, _ = queues
    boto3.client("s3").create_bucket(Bucket="claims")
    monkeypatch.setenv("FAILURE_BUCKET", "claims")
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    job_id = new_job_id()
    store = JobStore("claims", boto3.client("s3"))
    store.request_cancel(job_id, {"by": {"display": "arn:aws:iam::1:user/ops"}, "at": "2026-11-29T10:00:00.000Z"})
    event = {"kind": "drain", "consumer": "search-indexer", "jobId": job_id, "total": 3,
             "request": {"max": 3, "mode": "replay", "dryRun": False, "concurrency": 1}}
    out = fn.handler(event, LambdaContext(timeout_s=120))
    assert out["taken"] == 0 and out["stopped_by"] == "cancelled by arn:aws:iam::1:user/ops at 2026-11-29T10:00:00.000Z"
    assert store.load(job_id)["status"] == "cancelled"
    assert queue_count(failures) == 3  # nothing taken, nothing hidden


def test_bad_job_id_is_not_used_as_an_s3_key(queues, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="claims")
    monkeypatch.setenv("FAILURE_BUCKET", "claims")
    out = fn.handler({"consumer": "search-indexer", "dryRun": True, "jobId": "../etc"}, LambdaContext(timeout_s=120))
    assert "job summary not stored" in " ".join(out["notes"])
    assert boto3.client("s3").list_objects_v2(Bucket="claims").get("KeyCount", 0) == 0
