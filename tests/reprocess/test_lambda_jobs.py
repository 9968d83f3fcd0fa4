"""A run started by the operator API (with a jobId) leaves its summary in the jobs bucket."""
from __future__ import annotations

import json

import boto3

from handlers import reprocess as fn
from opsapi.jobs import summary_key
from streamkit.testing import LambdaContext
from tests.support.aws import queue_count
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item


def test_job_summary_is_stored_where_the_api_reads_it(queues, monkeypatch):
    failures, _ = queues
    boto3.client("s3").create_bucket(Bucket="claims")
    monkeypatch.setenv("FAILURE_BUCKET", "claims")
    capture(failures, [envelope(insert(user_item(i))) for i in range(2)])
    out = fn.handler({"consumer": "search-indexer", "dryRun": True, "jobId": "job-123"}, LambdaContext(timeout_s=120))
    stored = json.loads(boto3.client("s3").get_object(Bucket="claims", Key=summary_key("job-123"))["Body"].read())
    assert stored["jobId"] == "job-123" and stored["taken"] == out["taken"] == 2
    assert queue_count(failures) == 2  # a dry run


def test_bad_job_id_is_not_used_as_an_s3_key(queues, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="claims")
    monkeypatch.setenv("FAILURE_BUCKET", "claims")
    out = fn.handler({"consumer": "search-indexer", "dryRun": True, "jobId": "../etc"}, LambdaContext(timeout_s=120))
    assert "job summary not stored" in " ".join(out["notes"])
    assert boto3.client("s3").list_objects_v2(Bucket="claims").get("KeyCount", 0) == 0
