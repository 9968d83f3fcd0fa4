"""The operator API through Flask's test client, against moto (server mode) with real envelopes."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC
from pathlib import Path

import boto3
import pytest

from opsapi.services import get_services
from tests.support.aws import create_consumer_queues, create_users_table, queue_depth

from .conftest import CRM_SECRET, SLACK_SECRET, put_failures

ROOT = Path(__file__).resolve().parents[2]
OLD = "2026-01-01T00:00:00.000Z"


def wait_job(client, job_id: str) -> dict:
    jobs = get_services(client.application).jobs
    jobs.wait(job_id, 60)
    resp = client.get(f"/jobs/{job_id}")
    assert resp.status_code == 200
    return resp.get_json()


def create_function(name: str, env: dict) -> None:
    iam = boto3.client("iam")
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return event\n")
    boto3.client("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                                           Code={"ZipFile": buf.getvalue()}, Environment={"Variables": env})


def by_name(body: dict) -> dict:
    return {c["name"]: c for c in body["consumers"]}


# ---- GET /consumers ---------------------------------------------------------------------------

def test_consumers_show_depths_in_flight_parking_oldest_and_defaults(client):
    failures, parking = create_consumer_queues("search-indexer")
    put_failures(failures, "search-indexer", 1)
    # Someone else (a worker) holds one message: it counts as in flight, not visible.
    held = boto3.client("sqs").receive_message(QueueUrl=failures, MaxNumberOfMessages=1, VisibilityTimeout=120)
    assert len(held["Messages"]) == 1
    put_failures(failures, "search-indexer", 1, start=1, captured_at=OLD, error_type="TransientError", message="503")
    put_failures(failures, "search-indexer", 2, start=2)
    boto3.client("sqs").send_message(QueueUrl=parking, MessageBody="not an envelope")

    resp = client.get("/consumers")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    consumers = by_name(resp.get_json())
    assert list(consumers) == ["search-indexer", "slack-notifier", "crm-sync"]
    si = consumers["search-indexer"]
    assert (si["policy"], si["policySource"], si["reprocessMode"]) == ("dlq-capture", "registry default", "latest")
    assert (si["failures"]["visible"], si["failures"]["inFlight"], si["failures"]["exists"]) == (3, 1, True)
    assert si["failures"]["name"] == "userstream-dev-search-indexer-failures"
    assert si["parking"]["visible"] == 1
    assert si["topErrorTypes"] == {"KeyError": 2, "TransientError": 1}  # the sample sees what is visible
    assert si["oldestFailure"]["capturedAt"] == OLD and si["oldestFailure"]["ageSeconds"] > 3600
    # Consumers whose queues do not exist are still listed, with the registry's defaults.
    sn = consumers["slack-notifier"]
    assert sn["failures"]["exists"] is False and sn["policy"] == "soft-fail" and sn["reprocessMode"] == "replay"
    assert consumers["crm-sync"]["policy"] == "hard-fail"
    # Looking changed nothing: still 3 visible + 1 held.
    assert queue_depth(failures) == (3, 1)


def test_oldest_failure_is_the_oldest_captured_at_in_the_sample(client):
    failures, _ = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 2)
    put_failures(failures, "slack-notifier", 1, start=2, captured_at=OLD)
    sn = client.get("/consumers/slack-notifier").get_json()
    assert sn["oldestFailure"]["capturedAt"] == OLD
    assert sn["oldestFailure"]["ageSeconds"] > 3600
    assert sn["topErrorTypes"] == {"KeyError": 3}


def test_policy_comes_from_the_deployed_function_and_its_secrets_stay_hidden(client, monkeypatch):
    create_function("userstream-dev-crm-sync", {"FAILURE_POLICY": "soft-fail", "CRM_TOKEN": "function-env-token-xyz",
                                                "CRM_BASE_URL": "http://crm.local"})
    resp = client.get("/consumers")
    text = resp.get_data(as_text=True)
    crm = by_name(resp.get_json())["crm-sync"]
    assert crm["policy"] == "soft-fail" and crm["policySource"] == "function userstream-dev-crm-sync"
    assert "function-env-token-xyz" not in text and "CRM_TOKEN" not in text


def test_mapping_state_and_lag_come_from_the_local_emulator_state_file(client, tmp_path):
    state = {"updatedAt": "2026-11-22T10:00:00.000Z", "mappings": [{
        "uuid": "u-1", "name": "CrmSyncEventSourceMapping", "functionName": "userstream-dev-crm-sync",
        "eventSourceArn": "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/x", "state": "Enabled",
        "status": "retrying", "settings": {"batch_size": 10, "bisect_on_error": True, "max_retry_attempts": 3},
        "iteratorAgeSeconds": 42.5, "lastError": "KeyError: 'fullname'", "counters": {"read": 7}, "shards": {}}]}
    (tmp_path / "esm.json").write_text(json.dumps(state))
    consumers = by_name(client.get("/consumers").get_json())
    crm = consumers["crm-sync"]
    assert crm["mapping"]["source"] == "local-esm"
    assert (crm["mapping"]["state"], crm["mapping"]["status"]) == ("Enabled", "retrying")
    assert crm["mapping"]["settings"] == {"batch_size": 10, "bisect_on_error": True, "max_retry_attempts": 3}
    assert crm["lagSeconds"] == 42.5
    assert consumers["search-indexer"]["mapping"]["state"] == "unknown"  # not in the file, no Lambda mapping


# ---- GET /consumers/<name>/failures ------------------------------------------------------------

def test_failure_sample_shows_envelope_fields_and_does_not_consume(client):
    failures, _ = create_consumer_queues("search-indexer")
    records = put_failures(failures, "search-indexer", 2, error_type="KeyError", message="'fullname'")
    put_failures(failures, "search-indexer", 1, start=2, error_type="TransientError", message="search 503")

    first = client.get("/consumers/search-indexer/failures?limit=10")
    assert first.status_code == 200
    body = first.get_json()
    assert body["consumer"] == "search-indexer" and len(body["messages"]) == 3
    assert body["countsByErrorType"] == {"KeyError": 2, "TransientError": 1}
    m = next(m for m in body["messages"] if m["keys"] == {"user_id": {"S": "u0000"}})
    assert m["errorType"] == "KeyError" and m["errorMessage"] == "'fullname'"
    assert m["sequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"]
    assert m["eventName"] == "INSERT" and m["attempts"] == 1 and m["capturedAt"]
    assert m["receiveCount"] == 1
    # Not consumed, and visible again at once (not hidden for the sample's visibility timeout).
    assert queue_depth(failures) == (3, 0)
    again = client.get("/consumers/search-indexer/failures?limit=2").get_json()
    assert len(again["messages"]) == 2 and all(m["receiveCount"] == 2 for m in again["messages"])
    assert queue_depth(failures) == (3, 0)


def test_failure_sample_is_cached_so_a_refreshing_page_does_not_peek_each_time(env):
    from opsapi import create_app

    client = create_app({"SAMPLE_TTL_S": 3600}).test_client()
    failures, _ = create_consumer_queues("search-indexer")
    put_failures(failures, "search-indexer", 2)
    first = client.get("/consumers/search-indexer/failures").get_json()
    second = client.get("/consumers/search-indexer/failures").get_json()
    client.get("/consumers")
    assert first["cached"] is False and second["cached"] is True
    counts = [int(m["Attributes"]["ApproximateReceiveCount"]) for m in boto3.client("sqs").receive_message(
        QueueUrl=failures, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]]
    assert counts == [2, 2]  # one peek by the API + this receive


def test_sampling_stops_before_the_redrive_threshold(client):
    failures, parking = create_consumer_queues("crm-sync", redrive_max=4)
    put_failures(failures, "crm-sync", 1)
    first = client.get("/consumers/crm-sync/failures").get_json()
    assert len(first["messages"]) == 1 and first["maxReceiveCount"] == 4  # receive count now 1
    second = client.get("/consumers/crm-sync/failures").get_json()
    assert second["messages"] == [] and second["skippedNearRedrive"] == 1  # count 2 = 4 - headroom: left out
    for _ in range(3):  # paused: no more receives, however often the page refreshes
        third = client.get("/consumers/crm-sync/failures").get_json()
        assert "paused" in third
    client.get("/consumers")
    msgs = boto3.client("sqs").receive_message(QueueUrl=failures, AttributeNames=["All"])["Messages"]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in msgs] == ["3"]  # still below 4, not redriven
    assert queue_depth(parking) == (0, 0)


def test_failure_sample_shows_lambda_on_failure_records_and_malformed_bodies(client):
    """A hard-fail mapping's on-failure destination holds metadata only; a stray body is 'malformed'."""
    failures, _ = create_consumer_queues("crm-sync")
    on_failure = {  # Lambda's on-failure invocation record for a DynamoDB stream (AWS's format)
        "requestContext": {"requestId": "r-1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:x",
                           "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2026-11-22T10:00:00.000Z",
        "DDBStreamBatchInfo": {"shardId": "shardId-0001", "startSequenceNumber": "100", "endSequenceNumber": "103",
                               "approximateArrivalOfFirstRecord": "2026-11-22T09:59:00Z",
                               "approximateArrivalOfLastRecord": "2026-11-22T09:59:01Z", "batchSize": 4,
                               "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/x"}}
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=failures, MessageBody=json.dumps(on_failure))
    sqs.send_message(QueueUrl=failures, MessageBody="not json at all")
    body = client.get("/consumers/crm-sync/failures").get_json()
    kinds = {m["kind"]: m for m in body["messages"]}
    assert set(kinds) == {"on-failure", "malformed"}
    of = kinds["on-failure"]
    assert (of["errorType"], of["sequenceNumber"], of["attempts"], of["capturedAt"]) == (
        "RetryAttemptsExhausted", "100", 4, "2026-11-22T10:00:00.000Z")
    assert "shardId-0001" in of["errorMessage"] and "100..103" in of["errorMessage"]
    assert kinds["malformed"]["errorType"] == "MalformedEnvelope"
    assert body["countsByErrorType"] == {"RetryAttemptsExhausted": 1, "MalformedEnvelope": 1}
    assert queue_depth(failures) == (2, 0)


def test_failure_sample_of_a_missing_queue_says_so(client):
    body = client.get("/consumers/crm-sync/failures").get_json()
    assert body["messages"] == [] and "does not exist" in body["note"]


# ---- POST /consumers/<name>/reprocess and GET /jobs/<id> ---------------------------------------

def test_reprocess_job_drains_the_queue_with_the_real_search_indexer(client):
    failures, parking = create_consumer_queues("search-indexer")
    put_failures(failures, "search-indexer", 4)
    resp = client.post("/consumers/search-indexer/reprocess", json={"mode": "replay", "max": 100})
    assert resp.status_code == 202
    job_id = resp.get_json()["jobId"]
    assert resp.headers["Location"] == f"/jobs/{job_id}"
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded" and job["runner"] == "local"
    s = job["summary"]
    assert (s["taken"], s["succeeded"], s["still_failing"], s["parked"], s["exit_code"]) == (4, 4, 0, 0, 0)
    assert s["taken"] == s["succeeded"] + s["still_failing"] + s["parked"]
    assert queue_depth(failures) == (0, 0) and queue_depth(parking) == (0, 0)
    from consumers.search_indexer import get_sink

    assert {d["user_id"] for d in get_sink().search("ada", limit=20)} == {"u0000", "u0001", "u0002", "u0003"}
    si = by_name(client.get("/consumers").get_json())["search-indexer"]
    assert si["failures"]["visible"] == 0 and si["topErrorTypes"] == {} and si["job"] is None


def test_dry_run_preview_counts_by_error_type_and_leaves_the_queue(client):
    failures, _ = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 2, error_type="TransientError")
    put_failures(failures, "slack-notifier", 1, start=2)
    resp = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True})
    assert resp.status_code == 202 and resp.get_json()["request"]["dryRun"] is True
    job = wait_job(client, resp.get_json()["jobId"])
    assert job["status"] == "succeeded"
    assert job["summary"]["dry_run"] is True and job["summary"]["by_error_type"] == {"TransientError": 2, "KeyError": 1}
    assert job["summary"]["taken"] == 3
    visible, in_flight = queue_depth(failures)
    assert visible + in_flight == 3  # nothing deleted


def test_a_job_that_cannot_run_reports_why(client):
    resp = client.post("/consumers/crm-sync/reprocess", json={"mode": "replay"})  # no queues exist
    assert resp.status_code == 202
    job = wait_job(client, resp.get_json()["jobId"])
    assert job["status"] == "failed" and "ConfigError" in job["error"]


def test_reprocess_in_aws_invokes_the_reprocess_lambda_asynchronously(env, monkeypatch):
    """With REPROCESS_FUNCTION_NAME the job is an InvocationType=Event invoke carrying the job id."""
    from opsapi import create_app

    app = create_app({"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess"})
    sent: list[dict] = []

    def capture(params, **kwargs):  # what the API sends to Lambda, answered as Lambda answers an Event invoke
        invocation_type = params["headers"].get("X-Amz-Invocation-Type")
        sent.append({"InvocationType": invocation_type.decode() if isinstance(invocation_type, bytes) else invocation_type,
                     "url": params["url"], "payload": json.loads(params["body"])})
        from botocore.awsrequest import AWSResponse

        class Raw:
            def stream(self, *a, **k):
                yield b""

        return AWSResponse(params["url"], 202, {}, Raw())

    lam = get_services(app).clients.get("lambda")
    lam.meta.events.register("before-send.lambda.Invoke", lambda request, **kw: capture(
        {"headers": request.headers, "url": request.url, "body": request.body}))
    client = app.test_client()
    resp = client.post("/consumers/crm-sync/reprocess", json={"max": 50, "mode": "latest", "dryRun": False})
    assert resp.status_code == 202 and resp.get_json()["runner"] == "lambda"
    job_id = resp.get_json()["jobId"]
    assert len(sent) == 1 and sent[0]["InvocationType"] == "Event"
    assert "userstream-dev-reprocess" in sent[0]["url"]
    assert sent[0]["payload"] == {"consumer": "crm-sync", "max": 50, "mode": "latest", "dryRun": False,
                                  "concurrency": 1, "jobId": job_id}
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["status"] == "submitted" and job["invokeStatusCode"] == 202


# ---- validation, errors, secrets --------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("get", "/consumers/nope"), ("get", "/consumers/nope/failures"), ("post", "/consumers/nope/reprocess"),
    ("get", "/jobs/0123"), ("get", "/no/such/route"),
])
def test_not_found_is_json(client, method, path):
    resp = getattr(client, method)(path, json={} if method == "post" else None)
    assert resp.status_code == 404 and resp.mimetype == "application/json"
    assert resp.get_json()["error"]
    if "consumers/nope" in path:
        assert "unknown consumer" in resp.get_json()["error"]
        assert resp.get_json()["known"] == ["search-indexer", "slack-notifier", "crm-sync"]


@pytest.mark.parametrize("query", ["limit=0", "limit=11", "limit=abc", "limit=-3"])
def test_bad_limit_is_400(client, query):
    resp = client.get(f"/consumers/search-indexer/failures?{query}")
    assert resp.status_code == 400 and "limit must be" in resp.get_json()["error"]


@pytest.mark.parametrize("body,content_type,needle", [
    ("{not json", "application/json", "not valid JSON"),
    ("max=5", "application/x-www-form-urlencoded", "must be JSON"),
    ("", "application/x-www-form-urlencoded", "must be JSON"),  # an empty cross-site form post
    ("", "text/plain", "must be JSON"),
    ("[1, 2]", "application/json", "JSON object"),
    ('{"max": 0}', "application/json", "max must be"),
    ('{"max": "5"}', "application/json", "max must be"),
    ('{"max": true}', "application/json", "max must be"),
    ('{"mode": "newest"}', "application/json", "mode must be one of replay, latest"),
    ('{"dryRun": "yes"}', "application/json", "dryRun must be"),
    ('{"concurrency": 99}', "application/json", "concurrency must be"),
    ('{"maxx": 5}', "application/json", "unknown field(s) maxx"),
    ('{"dryRun": false}', "application/json", "USERS_TABLE"),  # search-indexer defaults to latest mode
])
def test_bad_reprocess_body_is_400_with_a_message(client, body, content_type, needle):
    resp = client.post("/consumers/search-indexer/reprocess", data=body, content_type=content_type)
    assert resp.status_code == 400 and resp.mimetype == "application/json"
    assert needle in resp.get_json()["error"]
    assert client.get("/jobs").get_json()["jobs"] == []  # nothing started


def test_method_not_allowed_is_json(client):
    resp = client.delete("/consumers")
    assert resp.status_code == 405 and resp.get_json()["status"] == 405


def test_no_endpoint_echoes_secrets(client):
    failures, _ = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 2, error_type="SlackApiError",
                 message=f"POST {SLACK_SECRET} failed; header Bearer {CRM_SECRET}")
    bodies = [client.get(p).get_data(as_text=True) for p in
              ("/", "/consumers", "/consumers/slack-notifier", "/consumers/slack-notifier/failures")]
    resp = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True})
    job = wait_job(client, resp.get_json()["jobId"])
    bodies += [client.get(f"/jobs/{job['jobId']}").get_data(as_text=True), client.get("/jobs").get_data(as_text=True)]
    for text in bodies:
        assert SLACK_SECRET not in text and CRM_SECRET not in text
        assert "s3cr3tWebhookValue" not in text
    assert "[redacted]" in bodies[3]  # the failure message is shown, the secret in it is not


def test_page_is_served_with_the_controls(client):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "Preview (dry run)" in html and "Reprocess" in html and "setInterval(refresh" in html


def test_lambda_entry_point_imports_no_consumer_client_library():
    code = ("import sys, handlers.api as a; assert a.app.name; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('slack_sdk', 'opensearchpy', 'httpx', 'reprocess', 'structlog', 'aws_lambda_powertools') "
            "or m.startswith('consumers.') and m != 'consumers.registry']; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _capture_invokes(app) -> list[dict]:
    """Answer the API's Lambda Invoke calls as Lambda answers an Event invoke (202), keeping the payloads."""
    from botocore.awsrequest import AWSResponse

    sent: list[dict] = []

    class Raw:
        def stream(self, *a, **k):
            yield b""

    def before_send(request, **kwargs):
        sent.append(json.loads(request.body))
        return AWSResponse(request.url, 202, {}, Raw())

    get_services(app).clients.get("lambda").meta.events.register("before-send.lambda.Invoke", before_send)
    return sent


def test_in_aws_the_job_summary_is_read_from_the_jobs_bucket_by_any_container(env):
    """The reprocess Lambda stores s3://JOBS_BUCKET/jobs/<jobId>.json; any API container reports it."""
    from opsapi import create_app

    boto3.client("s3").create_bucket(Bucket="failures")
    config = {"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess", "JOBS_BUCKET": "failures"}
    app = create_app(config)
    sent = _capture_invokes(app)
    client = app.test_client()
    job_id = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True}).get_json()["jobId"]
    assert sent[0]["jobId"] == job_id and sent[0]["dryRun"] is True
    pending = client.get(f"/jobs/{job_id}").get_json()
    assert pending["status"] == "submitted" and f"s3://failures/jobs/{job_id}.json" in pending["note"]

    summary = {"consumer": "slack-notifier", "taken": 3, "succeeded": 2, "still_failing": 1, "parked": 0,
               "by_error_type": {"SlackApiError": 1}, "exit_code": 1}
    boto3.client("s3").put_object(Bucket="failures", Key=f"jobs/{job_id}.json", Body=json.dumps(summary))
    done = client.get(f"/jobs/{job_id}").get_json()
    assert done["status"] == "finished-with-failures" and done["summary"] == summary
    other = create_app(config).test_client().get(f"/jobs/{job_id}")  # another container: nothing in memory
    assert other.status_code == 200 and other.get_json()["summary"] == summary
    assert create_app(config).test_client().get("/jobs/" + "0" * 32).status_code == 404


def test_in_aws_lag_and_queue_age_come_from_cloudwatch(env, monkeypatch):
    from datetime import datetime, timedelta

    from opsapi import create_app

    create_consumer_queues("crm-sync")
    cw = boto3.client("cloudwatch")
    now = datetime.now(UTC) - timedelta(minutes=2)  # a finished 1-minute period
    cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[{
        "MetricName": "IteratorAge", "Dimensions": [{"Name": "FunctionName", "Value": "userstream-dev-crm-sync"}],
        "Timestamp": now, "Value": 93_000, "Unit": "Milliseconds"}])
    cw.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateAgeOfOldestMessage",
        "Dimensions": [{"Name": "QueueName", "Value": "userstream-dev-crm-sync-failures"}],
        "Timestamp": now, "Value": 7200, "Unit": "Seconds"}])
    monkeypatch.setenv("CRM_SYNC_FAILURE_POLICY", "dlq-capture")
    crm = create_app({"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess"}).test_client().get(
        "/consumers/crm-sync").get_json()
    assert crm["lagSeconds"] == 93.0
    assert crm["oldestFailure"]["queueAgeSeconds"] == 7200
    assert (crm["policy"], crm["policySource"]) == ("dlq-capture", "env CRM_SYNC_FAILURE_POLICY")


def test_one_job_per_consumer_and_no_peeking_while_it_drains(env):
    """While a local job runs: a second one is 409, and samples come from the cache, never a receive
    (a peek could hide messages from the worker and end its run early)."""
    import threading

    from opsapi import create_app

    release = threading.Event()
    started = threading.Event()

    def slow_but_fine(record):  # stands in for a slow sink; the job waits for the test
        started.set()
        assert release.wait(30)

    app = create_app({"SAMPLE_TTL_S": 0, "DRAIN_OPTIONS": {"wait_time_s": 0, "handle_record": slow_but_fine}})
    client = app.test_client()
    failures, parking = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 3)
    try:
        first = client.post("/consumers/slack-notifier/reprocess", json={})
        assert first.status_code == 202
        assert started.wait(30)
        second = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True})
        assert second.status_code == 409 and second.get_json()["jobId"] == first.get_json()["jobId"]
        assert client.get("/consumers/slack-notifier").get_json()["job"]["jobId"] == first.get_json()["jobId"]
        sample = client.get("/consumers/slack-notifier/failures").get_json()
        assert sample["cached"] is True and sample["messages"] == []
        assert client.post("/consumers/search-indexer/reprocess", json={"dryRun": True}).status_code == 202
    finally:
        release.set()
    job = wait_job(client, first.get_json()["jobId"])
    assert job["status"] == "succeeded" and job["summary"]["taken"] == 3 and job["summary"]["succeeded"] == 3
    assert queue_depth(failures) == (0, 0) and queue_depth(parking) == (0, 0)


def test_mapping_state_and_settings_come_from_lambda_when_it_has_one(client):
    """In AWS the mapping is Lambda's (ListEventSourceMappings). Nothing is written to the table
    after the mapping exists, so moto never tries to invoke the function (LOCAL-AWS-NOTES)."""
    stream_arn = create_users_table("opsapi-users")
    create_function("userstream-dev-search-indexer", {"FAILURE_POLICY": "dlq-capture"})
    boto3.client("lambda").create_event_source_mapping(
        FunctionName="userstream-dev-search-indexer", EventSourceArn=stream_arn,
        StartingPosition="TRIM_HORIZON", BatchSize=25, FunctionResponseTypes=["ReportBatchItemFailures"])
    si = client.get("/consumers/search-indexer").get_json()
    m = si["mapping"]
    assert m["source"] == "lambda" and m["uuid"] and m["state"]
    assert m["eventSourceArn"] == stream_arn
    assert m["settings"]["BatchSize"] == 25 and m["settings"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert si["lagSeconds"] is None  # no CloudWatch outside AWS


def test_health_and_job_list(client):
    assert client.get("/healthz").get_json() == {"ok": True}
    failures, _ = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 1)
    job_id = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True, "max": 1}).get_json()["jobId"]
    wait_job(client, job_id)
    jobs = client.get("/jobs").get_json()["jobs"]
    assert [(j["jobId"], j["consumer"], j["status"], j["request"]["max"]) for j in jobs] == [
        (job_id, "slack-notifier", "succeeded", 1)]


def test_a_refreshing_page_reuses_metrics_and_mappings(env):
    """CloudWatch bills per metric requested and the Lambda control plane throttles: two page
    refreshes inside the cache windows make one GetMetricData per metric and one
    ListEventSourceMappings per function."""
    from opsapi import create_app

    app = create_app({"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess"})
    clients = get_services(app).clients
    calls: list[str] = []
    for service, op in (("cloudwatch", "GetMetricData"), ("lambda", "ListEventSourceMappings")):
        clients.get(service).meta.events.register(f"before-call.{service}.{op}",
                                                  lambda model, **kw: calls.append(model.name))
    client = app.test_client()
    for _ in range(2):
        assert client.get("/consumers").status_code == 200
    # Per consumer: IteratorAge + ApproximateAgeOfOldestMessage, and one mapping lookup.
    assert calls.count("GetMetricData") == 6 and calls.count("ListEventSourceMappings") == 3


def test_a_lambda_job_reports_the_summary_the_real_reprocess_handler_stored(env, monkeypatch):
    """The whole AWS path: the API's async invoke payload, run by the real reprocess handler
    (as Lambda would), stored in the jobs bucket, then read back by GET /jobs/<id>."""
    from opsapi import create_app
    from streamkit.testing import LambdaContext

    boto3.client("s3").create_bucket(Bucket="failures")
    monkeypatch.setenv("JOBS_BUCKET", "failures")
    monkeypatch.setenv("FAILURE_BUCKET", "failures")
    failures, parking = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 3)
    app = create_app({"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess", "JOBS_BUCKET": "failures"})
    sent = _capture_invokes(app)
    client = app.test_client()
    job_id = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True}).get_json()["jobId"]
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "submitted"

    from handlers.reprocess import handler

    result = handler(sent[0], LambdaContext(timeout_s=60, function_name="userstream-dev-reprocess"))
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded" and job["summary"]["taken"] == result["taken"] == 3
    assert job["summary"]["by_error_type"] == {"KeyError": 3}
    visible, in_flight = queue_depth(failures)
    assert visible + in_flight == 3  # a dry run deletes nothing


def test_secret_named_fields_are_redacted_whatever_their_source(client, tmp_path):
    """Values the API cannot know as secrets (not in any environment it reads) are still hidden
    when their key says what they are, e.g. a setting in the emulator's state file."""
    state = {"mappings": [{"functionName": "userstream-dev-slack-notifier", "state": "Enabled",
                           "settings": {"BatchSize": 5, "webhook_url": "https://hooks.example/T1/B1/zzz",
                                        "auth_token": "tok123"}}]}
    (tmp_path / "esm.json").write_text(json.dumps(state))
    text = client.get("/consumers/slack-notifier").get_data(as_text=True)
    settings = json.loads(text)["mapping"]["settings"]
    assert settings == {"BatchSize": 5, "webhook_url": "[redacted]", "auth_token": "[redacted]"}
    assert "hooks.example" not in text and "tok123" not in text


def test_a_deployed_functions_secret_value_is_redacted_inside_failure_messages(client):
    """The API learns a secret value only from the consumer function's environment (not its
    own); once it has read that environment, the value never leaves in any JSON body."""
    function_secret = "https://hooks.slack.example/services/TFN/BFN/onlyInTheFunctionEnv"
    create_function("userstream-dev-slack-notifier", {"FAILURE_POLICY": "soft-fail",
                                                      "SLACK_WEBHOOK_URL": function_secret})
    failures, _ = create_consumer_queues("slack-notifier")
    put_failures(failures, "slack-notifier", 1, error_type="SlackApiError", message=f"POST {function_secret} 500")
    listing = client.get("/consumers").get_data(as_text=True)  # reads the function's environment
    sample = client.get("/consumers/slack-notifier/failures")
    assert sample.status_code == 200
    message = sample.get_json()["messages"][0]["errorMessage"]
    assert message == "POST [redacted] 500"
    assert function_secret not in listing and function_secret not in sample.get_data(as_text=True)


def test_routes_are_one_blueprint_and_its_services_are_public():
    """Issue 12 builds on this shape: every route in the ``opsapi`` blueprint, the objects
    behind them reachable as attributes of ``get_services(app)``."""
    from opsapi import Services, create_app, get_services

    app = create_app()
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert endpoints and all(e.startswith("opsapi.") for e in endpoints)
    svc = get_services(app)
    assert isinstance(svc, Services) and svc.sampler.inspector is svc.inspector
    assert svc.jobs.clients is svc.clients and svc.inspector.clients is svc.clients
