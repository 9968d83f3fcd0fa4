"""The operator API through Flask's test client, against moto (server mode): real envelopes and
ledger items from the real capture path, the real worker for jobs."""
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
from tests.support.aws import create_consumer_queues, queue_depth

from .conftest import CRM_SECRET, SLACK_SECRET, capture_failures, put_failures

ROOT = Path(__file__).resolve().parents[2]
IAM_ARN = "arn:aws:iam::123456789012:user/on-call-ada"


def wait_job(client, job_id: str) -> dict:
    jobs = get_services(client.application).jobs
    jobs.wait(job_id, 60)
    resp = client.get(f"/jobs/{job_id}")
    assert resp.status_code == 200
    return resp.get_json()


def confirmed(client, path: str, body: dict, **kw) -> dict:
    """POST, read the count the API asks to confirm, POST again with it; the 202 answer."""
    ask = client.post(path, json=body, **kw)
    assert ask.status_code == 428, ask.get_json()
    count = ask.get_json()["confirm"]["count"]
    resp = client.post(path, json={**body, "confirmCount": count}, **kw)
    assert resp.status_code == 202, resp.get_json()
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


def iam_request(arn: str = IAM_ARN) -> dict:
    """What serverless-wsgi puts in the WSGI environ for an IAM-authorized HTTP API request."""
    return {"serverless.event": {"requestContext": {"authorizer": {"iam": {"userArn": arn, "accountId": "123456789012"}}}}}


# ---- GET /consumers: the truth, from the ledger, the queues, the mapping, the alarms ---------------

def test_counts_per_error_type_are_the_ledgers_true_counts_not_a_sample(client):
    failures, parking = create_consumer_queues("search-indexer")
    capture_failures(failures, "search-indexer", 25)
    capture_failures(failures, "search-indexer", 3, start=100, error_type="TransientError", message="503")
    si = client.get("/consumers/search-indexer").get_json()
    assert si["ledger"]["open"] == 28 and si["ledger"]["counts"]["captured"] == 28
    assert si["topErrorTypes"] == si["ledger"]["openByErrorType"] == {"KeyError": 25, "TransientError": 3}
    assert si["failures"]["visible"] == 28 and si["parking"]["visible"] == 0
    assert si["status"]["badge"] == "degraded"
    assert si["status"]["reasons"][0] == "28 failures waiting for reprocessing: KeyError x25, TransientError x3"
    assert si["oldestFailure"]["source"].startswith("failure ledger") and si["oldestFailure"]["ageSeconds"] < 120


def test_the_schema_change_incident_shows_degraded_blocked_and_dropping_then_ok(incident, client):
    incident.write(20, v2=False)
    incident.write(6, v2=True)
    incident.run()
    c = by_name(client.get("/consumers").get_json())
    si, sn, cs = c["search-indexer"], c["slack-notifier"], c["crm-sync"]
    assert si["status"]["badge"] == "degraded" and si["ledger"]["openByErrorType"] == {"KeyError": 6}
    assert sn["status"]["badge"] == "dropping" and sn["drops"]["last3h"] == 6 and sn["drops"]["recent"] >= 1
    assert sn["status"]["reasons"][0].startswith(f"dropped {sn['drops']['recent']} records in its latest batch (6 in")
    assert cs["status"]["badge"] == "blocked"
    b = cs["blocking"]
    assert (b["errorType"], b["errorMessage"]) == ("KeyError", "'fullname'")  # the function's own error
    assert "batch item failure" not in json.dumps(cs["status"])  # not the mapping's generic text
    assert b["attempts"] >= 3 and b["maxRetryAttempts"] == 100 and b["agesOutAt"] > b["recordCreatedAt"]
    assert cs["status"]["reasons"][0].startswith(f"blocked on record {b['sequenceNumber']}")
    assert cs["alarms"]["source"] == "local" and cs["mapping"]["status"] == "retrying"

    incident.fix()
    incident.write(5, v2=True)  # after the fix: new signups go through
    incident.run()
    job = confirmed(client, "/consumers/search-indexer/reprocess", {"mode": "replay"})
    assert wait_job(client, job["jobId"])["status"] == "succeeded"
    c = by_name(client.get("/consumers").get_json())
    assert {n: x["status"]["badge"] for n, x in c.items()} == {
        "search-indexer": "ok", "slack-notifier": "ok", "crm-sync": "ok"}
    assert c["search-indexer"]["ledger"]["counts"] == {"captured": 0, "retrying": 0, "parked": 0, "handled": 6}
    assert c["crm-sync"]["blocking"]["state"] == "resolved" and c["crm-sync"]["blocking"]["resolvedAt"]
    assert c["slack-notifier"]["drops"] == {"recent": 0, "recentAt": c["slack-notifier"]["drops"]["recentAt"],
                                            "last3h": 6}  # the history stays, the badge clears
    assert all(queue_depth(incident.queues[n]["parking"]) == (0, 0) for n in incident.queues)  # nothing parked


def test_policy_comes_from_the_deployed_function_and_its_secrets_stay_hidden(client):
    create_function("userstream-dev-crm-sync", {"FAILURE_POLICY": "soft-fail", "CRM_TOKEN": "function-env-token-xyz",
                                                "CRM_BASE_URL": "http://crm.local"})
    resp = client.get("/consumers")
    text = resp.get_data(as_text=True)
    crm = by_name(resp.get_json())["crm-sync"]
    assert crm["policy"] == "soft-fail" and crm["policySource"] == "function userstream-dev-crm-sync"
    assert "function-env-token-xyz" not in text and "CRM_TOKEN" not in text


def test_a_stale_state_file_says_how_old_it_is(client, tmp_path):
    state = {"updatedAt": "2026-01-01T10:00:00.000Z", "mappings": [{
        "uuid": "u-1", "functionName": "userstream-dev-crm-sync", "state": "Enabled", "status": "caught-up",
        "settings": {"BatchSize": 10}, "iteratorAgeSeconds": 0.0, "lastError": None, "counters": {}}]}
    (tmp_path / "esm.json").write_text(json.dumps(state))
    crm = client.get("/consumers/crm-sync").get_json()
    assert crm["mapping"]["source"] == "local-esm" and crm["mapping"]["ageSeconds"] > 86_400
    assert any(u.startswith("mapping state is") and "days old" in u for u in crm["status"]["unknown"])
    # the stale state's "iterator age 0" is no evidence of health now: no data, as CloudWatch says
    assert crm["alarms"]["iteratorAge"]["state"] == crm["alarms"]["errors"]["state"] == "INSUFFICIENT_DATA"


def test_aws_errors_are_shown_in_words_never_as_question_marks(env, monkeypatch):
    from opsapi import create_app

    monkeypatch.setenv("LEDGER_TABLE", "no-such-ledger")
    create_consumer_queues("search-indexer")
    client = create_app().test_client()
    si = client.get("/consumers/search-indexer").get_json()
    assert si["ledger"]["error"].startswith("ResourceNotFoundException")
    assert any(u.startswith("failure ledger not readable: ResourceNotFoundException") for u in si["status"]["unknown"])
    listing = client.get("/consumers/search-indexer/failures").get_json()
    assert listing["error"].startswith("ResourceNotFoundException") and listing["items"] == []
    assert "?" not in json.dumps(si["status"])


def test_in_aws_badges_come_from_the_stacks_alarms(env):
    """DescribeAlarms (moto stores alarms; their states are set here as CloudWatch would):
    the alarms are matched to a consumer by metric and dimension, whatever their names."""
    from opsapi import create_app

    create_consumer_queues("crm-sync")
    create_consumer_queues("search-indexer")
    cw = boto3.client("cloudwatch")

    def alarm(name, namespace, metric, dim, value, state):
        cw.put_metric_alarm(AlarmName=name, Namespace=namespace, MetricName=metric, Statistic="Maximum", Period=60,
                            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                            Dimensions=[{"Name": dim, "Value": value}])
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"{metric} says so")

    alarm("stack-CrmSyncIteratorAgeAlarm-X1", "AWS/Lambda", "IteratorAge", "FunctionName", "userstream-dev-crm-sync",
          "ALARM")
    alarm("stack-SearchIndexerParkingQueueDepthAlarm-X2", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
          "QueueName", "userstream-dev-search-indexer-parking", "ALARM")
    alarm("stack-SearchIndexerIteratorAgeAlarm-X3", "AWS/Lambda", "IteratorAge", "FunctionName",
          "userstream-dev-search-indexer", "OK")
    client = create_app({"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess"}).test_client()
    c = by_name(client.get("/consumers").get_json())
    crm, si, sn = c["crm-sync"], c["search-indexer"], c["slack-notifier"]
    assert crm["alarms"]["source"] == "cloudwatch" and crm["alarms"]["iteratorAge"]["state"] == "ALARM"
    assert crm["status"]["badge"] == "blocked"
    assert si["alarms"]["iteratorAge"]["state"] == "OK" and si["alarms"]["parkingDepth"]["state"] == "ALARM"
    assert si["status"]["badge"] == "degraded"
    assert any("SearchIndexerParkingQueueDepthAlarm" in r for r in si["status"]["reasons"])
    assert sn["status"]["badge"] == "ok" and "iteratorAge" not in sn["alarms"]


def test_mapping_state_and_settings_come_from_lambda_when_it_has_one(client):
    """In AWS the mapping is Lambda's (ListEventSourceMappings). Nothing is written to the table
    after the mapping exists, so moto never tries to invoke the function (LOCAL-AWS-NOTES)."""
    ddb = boto3.client("dynamodb")
    table = ddb.create_table(TableName="opsapi-users", BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                             StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    create_function("userstream-dev-search-indexer", {"FAILURE_POLICY": "dlq-capture"})
    boto3.client("lambda").create_event_source_mapping(
        FunctionName="userstream-dev-search-indexer", EventSourceArn=table["TableDescription"]["LatestStreamArn"],
        StartingPosition="TRIM_HORIZON", BatchSize=25, FunctionResponseTypes=["ReportBatchItemFailures"])
    si = client.get("/consumers/search-indexer").get_json()
    m = si["mapping"]
    assert m["source"] == "lambda" and m["uuid"] and m["state"] and m["readAt"]
    assert m["settings"]["BatchSize"] == 25 and m["settings"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert si["lagSeconds"] is None  # no CloudWatch outside AWS


def test_in_aws_lag_queue_age_and_charts_come_from_one_get_metric_data_per_consumer(env, monkeypatch):
    from datetime import datetime, timedelta

    from opsapi import create_app

    create_consumer_queues("crm-sync")
    cw = boto3.client("cloudwatch")
    when = datetime.now(UTC) - timedelta(minutes=2)
    cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[{
        "MetricName": "IteratorAge", "Dimensions": [{"Name": "FunctionName", "Value": "userstream-dev-crm-sync"}],
        "Timestamp": when, "Value": 93_000, "Unit": "Milliseconds"}])
    cw.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateAgeOfOldestMessage",
        "Dimensions": [{"Name": "QueueName", "Value": "userstream-dev-crm-sync-failures"}],
        "Timestamp": when, "Value": 7200, "Unit": "Seconds"}])
    monkeypatch.setenv("CRM_SYNC_FAILURE_POLICY", "dlq-capture")
    app = create_app({"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess"})
    calls: list[str] = []
    get_services(app).clients.get("cloudwatch").meta.events.register(
        "before-call.cloudwatch.GetMetricData", lambda model, **kw: calls.append(model.name))
    client = app.test_client()
    crm = client.get("/consumers/crm-sync").get_json()
    assert crm["lagSeconds"] == 93.0 and crm["oldestFailure"]["queueAgeSeconds"] == 7200
    assert (crm["policy"], crm["policySource"]) == ("dlq-capture", "env CRM_SYNC_FAILURE_POLICY")
    chart = client.get("/consumers/crm-sync/charts").get_json()
    assert chart["source"] == "cloudwatch" and chart["series"]["iteratorAgeSeconds"][-1][1] == 93.0
    assert calls == ["GetMetricData"]  # status and charts share one call (cached 60 s)


def test_local_charts_come_from_the_emulators_minutes(incident, client):
    incident.write(8, v2=False)
    incident.write(2, v2=True)
    incident.run()
    chart = client.get("/consumers/search-indexer/charts").get_json()
    assert chart["source"] == "local-esm" and chart["periodSeconds"] == 60
    s = chart["series"]
    assert sum(v for _, v in s["handled"]) == 8 and sum(v for _, v in s["failed"]) == 2
    crm = client.get("/consumers/crm-sync/charts").get_json()["series"]
    assert max(v for _, v in crm["iteratorAgeSeconds"]) >= 0 and crm["failed"]


# ---- GET /consumers/<name>/failures: from the ledger --------------------------------------------------

def test_failures_come_from_the_ledger_with_filters_and_pages(client):
    failures, _ = create_consumer_queues("search-indexer")
    records = capture_failures(failures, "search-indexer", 12)
    capture_failures(failures, "search-indexer", 3, start=50, error_type="TransientError", message="search 503")
    body = client.get("/consumers/search-indexer/failures?limit=100").get_json()
    assert len(body["items"]) == 15 and body["next"] is None
    first = next(i for i in body["items"] if i["keysText"] == '{"user_id":"u0000"}')
    assert (first["errorType"], first["errorMessage"], first["state"], first["attempts"]) == (
        "KeyError", "'fullname'", "captured", 1)
    assert first["sequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"] and first["messageId"]
    by_type = client.get("/consumers/search-indexer/failures?errorType=TransientError").get_json()
    assert {i["keysText"] for i in by_type["items"]} == {'{"user_id":"u0050"}', '{"user_id":"u0051"}',
                                                          '{"user_id":"u0052"}'}
    by_key = client.get("/consumers/search-indexer/failures?key=u0007").get_json()
    assert [i["keysText"] for i in by_key["items"]] == ['{"user_id":"u0007"}']
    assert client.get("/consumers/search-indexer/failures?state=parked").get_json()["items"] == []
    # pages: 15 items, 4 at a time, newest first, none twice
    seen, cursor = [], None
    for _ in range(10):
        page = client.get("/consumers/search-indexer/failures?limit=4" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 15 and seen == sorted(seen, reverse=True)
    assert queue_depth(failures) == (15, 0)  # nothing was received


@pytest.mark.parametrize("query,needle", [("limit=0", "limit must be"), ("limit=201", "limit must be"),
                                          ("limit=abc", "limit must be"), ("state=lost", "state must be one of"),
                                          ("cursor=garbage!", "cursor is not one")])
def test_bad_failure_filters_are_400(client, query, needle):
    resp = client.get(f"/consumers/search-indexer/failures?{query}")
    assert resp.status_code == 400 and needle in resp.get_json()["error"]


def test_half_an_hour_of_page_refreshes_never_receives_from_a_failure_queue(env):
    """The page refreshes every 3 s; run its requests for the equivalent of 30 minutes on a
    simulated clock (every cache expires as it would): no ReceiveMessage, and every message's
    receive count is where it was."""
    from opsapi import create_app

    now = [0.0]
    app = create_app({"CLOCK": lambda: now[0], "REPROCESS_FUNCTION_NAME": None})
    client = app.test_client()
    queues = {n: create_consumer_queues(n, redrive_max=5) for n in ("search-indexer", "slack-notifier", "crm-sync")}
    for name, (failures, _) in queues.items():
        capture_failures(failures, name, 4)
    receives: list[dict] = []
    get_services(app).clients.get("sqs").meta.events.register(
        "before-call.sqs.ReceiveMessage", lambda params, **kw: receives.append(params))
    for _ in range(600):  # 30 minutes at one refresh every 3 s
        assert client.get("/consumers").status_code == 200
        for name in queues:
            assert client.get(f"/consumers/{name}/failures?limit=20").status_code == 200
            assert client.get(f"/consumers/{name}/charts").status_code == 200
        assert client.get("/jobs").status_code == 200
        now[0] += 3.0
    assert receives == []
    sqs = boto3.client("sqs")
    for failures, parking in queues.values():
        msgs = sqs.receive_message(QueueUrl=failures, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        assert sorted(m["Attributes"]["ApproximateReceiveCount"] for m in msgs) == ["1"] * 4  # this receive only
        assert queue_depth(parking) == (0, 0)


# ---- jobs: confirmation, progress, cancel, history, caller -----------------------------------------------

def test_a_reprocess_needs_a_confirmation_with_the_count_and_runs_no_more_than_that(client):
    failures, parking = create_consumer_queues("search-indexer")
    capture_failures(failures, "search-indexer", 6)
    ask = client.post("/consumers/search-indexer/reprocess", json={"mode": "replay"})
    assert ask.status_code == 428
    confirm = ask.get_json()["confirm"]
    assert confirm["count"] == 6 and confirm["what"] == "messages in userstream-dev-search-indexer-failures"
    assert client.get("/jobs").get_json()["jobs"] == [] and queue_depth(failures) == (6, 0)  # nothing ran
    resp = client.post("/consumers/search-indexer/reprocess", json={"mode": "replay", "confirmCount": 4})
    assert resp.status_code == 202 and resp.headers["Location"] == f"/jobs/{resp.get_json()['jobId']}"
    job = wait_job(client, resp.get_json()["jobId"])
    assert job["status"] == "succeeded" and job["request"]["max"] == 4 and job["confirmedCount"] == 4
    assert job["summary"]["taken"] == 4 and job["progress"]["done"] == 4 and job["progress"]["total"] == 4
    assert job["stoppedBy"] == "max 4 messages taken"
    assert queue_depth(failures) == (2, 0) and queue_depth(parking) == (0, 0)
    ledger = client.get("/consumers/search-indexer").get_json()["ledger"]["counts"]
    assert (ledger["handled"], ledger["captured"]) == (4, 2)


@pytest.mark.parametrize("value", [0, -1, "4", True, 10_001])
def test_a_bad_confirm_count_is_400(client, value):
    failures, _ = create_consumer_queues("search-indexer")
    resp = client.post("/consumers/search-indexer/reprocess", json={"mode": "replay", "confirmCount": value})
    assert resp.status_code == 400 and "confirmCount must be" in resp.get_json()["error"]


def test_a_dry_run_needs_no_confirmation_and_leaves_the_queue(client):
    failures, _ = create_consumer_queues("slack-notifier")
    capture_failures(failures, "slack-notifier", 2, error_type="TransientError")
    capture_failures(failures, "slack-notifier", 1, start=2)
    resp = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True})
    assert resp.status_code == 202 and resp.get_json()["request"]["dryRun"] is True
    job = wait_job(client, resp.get_json()["jobId"])
    assert job["status"] == "succeeded" and job["total"] == 3 and job["progress"]["done"] == 3
    assert job["summary"]["dry_run"] is True and job["summary"]["by_error_type"] == {"TransientError": 2, "KeyError": 1}
    assert job["stoppedBy"] == "queue empty"
    visible, in_flight = queue_depth(failures)
    assert visible + in_flight == 3  # nothing deleted


def test_a_job_records_the_callers_iam_identity(client):
    failures, _ = create_consumer_queues("search-indexer")
    capture_failures(failures, "search-indexer", 2)
    job = confirmed(client, "/consumers/search-indexer/reprocess", {"mode": "replay"}, environ_base=iam_request())
    assert job["caller"] == {"arn": IAM_ARN, "source": "iam", "display": IAM_ARN, "accountId": "123456789012"}
    done = wait_job(client, job["jobId"])
    assert done["caller"]["arn"] == IAM_ARN
    assert client.get("/jobs").get_json()["jobs"][0]["caller"]["arn"] == IAM_ARN
    local = client.post("/consumers/search-indexer/reprocess", json={"dryRun": True}).get_json()
    assert local["caller"]["arn"] is None and "no IAM identity" in local["caller"]["display"]


def test_cancel_stops_the_worker_between_messages_and_hides_nothing(env):
    import threading

    from opsapi import create_app

    gate, started = threading.Event(), threading.Event()

    def slow(record):  # one message at a time, as slowly as the test says
        started.set()
        assert gate.wait(30)

    app = create_app({"DRAIN_OPTIONS": {"wait_time_s": 0, "handle_record": slow}})
    client = app.test_client()
    failures, parking = create_consumer_queues("slack-notifier")
    capture_failures(failures, "slack-notifier", 8)
    job = confirmed(client, "/consumers/slack-notifier/reprocess", {}, environ_base=iam_request())
    assert started.wait(30)
    running = client.get(f"/jobs/{job['jobId']}").get_json()
    assert running["status"] == "running" and running["progress"]["total"] == 8
    conflict = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True})
    assert conflict.status_code == 409 and conflict.get_json()["jobId"] == job["jobId"]
    cancel = client.post(f"/jobs/{job['jobId']}/cancel", json={}, environ_base=iam_request())
    assert cancel.status_code == 200 and cancel.get_json()["cancelRequested"]["by"]["arn"] == IAM_ARN
    gate.set()  # the message in hand finishes; no other one starts
    done = wait_job(client, job["jobId"])
    assert done["status"] == "cancelled" and done["stoppedBy"].startswith(f"cancelled by {IAM_ARN} at ")
    s = done["summary"]
    assert s["taken"] == s["succeeded"] < 8 and s["taken"] + s["released"] >= 1
    assert queue_depth(failures) == (8 - s["succeeded"], 0)  # the rest visible again at once, none hidden
    assert client.post(f"/jobs/{job['jobId']}/cancel", json={}).status_code == 409  # finished already
    assert client.post("/jobs/" + "0" * 32 + "/cancel", json={}).status_code == 404


def test_job_history_survives_a_restart_of_the_api(env):
    from opsapi import create_app

    boto3.client("s3").create_bucket(Bucket="jobs-bucket")
    config = {"JOBS_BUCKET": "jobs-bucket", "DRAIN_OPTIONS": {"wait_time_s": 0, "handle_record": lambda r: None}}
    app = create_app(config)
    client = app.test_client()
    failures, _ = create_consumer_queues("slack-notifier")
    capture_failures(failures, "slack-notifier", 3)
    first = client.post("/consumers/slack-notifier/reprocess", json={"dryRun": True}).get_json()
    wait_job(client, first["jobId"])
    second = confirmed(client, "/consumers/slack-notifier/reprocess", {}, environ_base=iam_request())
    wait_job(client, second["jobId"])

    restarted = create_app(config).test_client()  # a cold start: nothing in memory
    history = restarted.get("/jobs").get_json()
    assert history["stored"] == "s3://jobs-bucket/jobs/"
    assert [j["jobId"] for j in history["jobs"]] == [second["jobId"], first["jobId"]]  # newest first
    newest = history["jobs"][0]
    assert newest["status"] == "succeeded" and newest["summary"]["succeeded"] == 3 and newest["caller"]["arn"] == IAM_ARN
    assert newest["stoppedBy"] and newest["progress"]["done"] == 3
    assert restarted.get(f"/jobs/{first['jobId']}").get_json()["request"]["dryRun"] is True


def test_redrive_moves_parked_messages_back_with_a_confirmation(client):
    failures, parking = create_consumer_queues("search-indexer")
    capture_failures(failures, "search-indexer", 3)

    def never(record):
        raise KeyError("fullname")

    from reprocess.worker import drain

    for _ in range(2):
        drain("search-indexer", mode="replay", handle_record=never, max_attempts=2, wait_time_s=0)
    assert queue_depth(parking) == (3, 0) and queue_depth(failures) == (0, 0)
    parked = client.get("/consumers/search-indexer/failures?state=parked").get_json()["items"]
    assert len(parked) == 3 and all(i["parkReason"].startswith("gave up after 2 attempts: KeyError") for i in parked)
    si = client.get("/consumers/search-indexer").get_json()
    assert si["status"]["badge"] == "degraded" and "3 parked" in " ".join(si["status"]["reasons"])

    ask = client.post("/consumers/search-indexer/redrive", json={})
    assert ask.status_code == 428 and ask.get_json()["confirm"]["count"] == 3
    assert queue_depth(parking) == (3, 0)
    job = confirmed(client, "/consumers/search-indexer/redrive", {})
    done = wait_job(client, job["jobId"])
    assert done["status"] == "succeeded" and done["summary"]["moved"] == 3 and done["summary"]["taken"] == 3
    assert queue_depth(parking) == (0, 0) and queue_depth(failures) == (3, 0)
    items = client.get("/consumers/search-indexer/failures?state=retrying").get_json()["items"]
    assert len(items) == 3 and all(i["settledBy"] == f"job {job['jobId']}" for i in items)
    assert all("parkReason" not in i for i in items)
    msgs = boto3.client("sqs").receive_message(QueueUrl=failures, MaxNumberOfMessages=10,
                                               MessageAttributeNames=["All"])["Messages"]
    assert all("parked" not in json.loads(m["Body"]) and "parkReason" not in m.get("MessageAttributes", {})
               for m in msgs)
    assert {m["MessageId"] for m in msgs} == {i["messageId"] for i in items}  # the ledger names the new copies


def test_a_job_that_cannot_run_reports_why(client):
    resp = client.post("/consumers/crm-sync/reprocess", json={"mode": "replay", "confirmCount": 1})  # no queues
    assert resp.status_code == 202
    job = wait_job(client, resp.get_json()["jobId"])
    assert job["status"] == "failed" and "ConfigError" in job["error"] and job["stoppedBy"]


def _capture_invokes(app) -> list[dict]:
    """Answer the API's Lambda Invoke calls as Lambda answers an Event invoke (202), keeping the payloads."""
    from botocore.awsrequest import AWSResponse

    sent: list[dict] = []

    class Raw:
        def stream(self, *a, **k):
            yield b""

    def before_send(request, **kwargs):
        invocation_type = request.headers.get("X-Amz-Invocation-Type")
        sent.append({"payload": json.loads(request.body), "url": request.url,
                     "type": invocation_type.decode() if isinstance(invocation_type, bytes) else invocation_type})
        return AWSResponse(request.url, 202, {}, Raw())

    get_services(app).clients.get("lambda").meta.events.register("before-send.lambda.Invoke", before_send)
    return sent


def test_in_aws_a_job_is_an_async_invoke_and_the_real_reprocess_handler_reports_to_the_bucket(env, monkeypatch):
    """The whole AWS path: the API's async invoke payload, run by the real reprocess handler
    (as Lambda would), progress and summary in the jobs bucket, read back by any container;
    a cancel request in the bucket stops the Lambda's run."""
    from opsapi import create_app
    from streamkit.testing import LambdaContext

    boto3.client("s3").create_bucket(Bucket="failures")
    monkeypatch.setenv("JOBS_BUCKET", "failures")
    failures, parking = create_consumer_queues("search-indexer")
    capture_failures(failures, "search-indexer", 3)
    config = {"REPROCESS_FUNCTION_NAME": "userstream-dev-reprocess", "JOBS_BUCKET": "failures"}
    app = create_app(config)
    sent = _capture_invokes(app)
    client = app.test_client()
    job = confirmed(client, "/consumers/search-indexer/reprocess", {"mode": "replay"}, environ_base=iam_request())
    assert len(sent) == 1 and sent[0]["type"] == "Event" and "userstream-dev-reprocess" in sent[0]["url"]
    assert sent[0]["payload"] == {"kind": "drain", "consumer": "search-indexer", "jobId": job["jobId"], "total": 3,
                                  "request": {"max": 3, "mode": "replay", "dryRun": False, "concurrency": 1}}
    pending = client.get(f"/jobs/{job['jobId']}").get_json()
    assert pending["status"] == "submitted" and pending["caller"]["arn"] == IAM_ARN

    from handlers.reprocess import handler

    result = handler(sent[0]["payload"], LambdaContext(timeout_s=60, function_name="userstream-dev-reprocess"))
    other = create_app(config).test_client()  # another container: nothing in memory
    for c in (client, other):
        done = c.get(f"/jobs/{job['jobId']}").get_json()
        assert done["status"] == "succeeded" and done["summary"]["taken"] == result["taken"] == 3
        assert done["caller"]["arn"] == IAM_ARN and done["stoppedBy"] == "max 3 messages taken"
    assert queue_depth(failures) == (0, 0)
    assert other.get("/jobs/" + "0" * 32).status_code == 404

    # a cancel request in the bucket stops a Lambda-run job before it takes anything
    capture_failures(failures, "search-indexer", 2, start=10)
    job2 = confirmed(client, "/consumers/search-indexer/reprocess", {"mode": "replay"})
    assert client.post(f"/jobs/{job2['jobId']}/cancel", json={}).status_code == 200
    handler(sent[1]["payload"], LambdaContext(timeout_s=60, function_name="userstream-dev-reprocess"))
    done2 = other.get(f"/jobs/{job2['jobId']}").get_json()
    assert done2["status"] == "cancelled" and done2["stoppedBy"].startswith("cancelled by local user")
    assert done2["summary"]["taken"] == 0 and queue_depth(failures) == (2, 0)


# ---- validation, errors, headers, secrets -------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("get", "/consumers/nope"), ("get", "/consumers/nope/failures"), ("post", "/consumers/nope/reprocess"),
    ("get", "/jobs/0123"), ("get", "/no/such/route"), ("post", "/consumers/crm-sync/jobs/nope"),
])
def test_not_found_is_json(client, method, path):
    resp = getattr(client, method)(path, json={} if method == "post" else None)
    assert resp.status_code == 404 and resp.mimetype == "application/json"
    assert resp.get_json()["error"]
    if "consumers/nope" in path:
        assert "unknown consumer" in resp.get_json()["error"]
        assert resp.get_json()["known"] == ["search-indexer", "slack-notifier", "crm-sync"]


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


def test_every_response_carries_the_protective_headers_and_only_trusted_hosts_are_served(client):
    for path in ("/", "/consumers", "/static/app.js", "/jobs", "/no/such/route"):
        resp = client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
    html = client.get("/").get_data(as_text=True)
    assert "<script>" not in html and "<script src=" in html and "<style>" not in html  # nothing inline
    bad = client.get("/consumers", headers={"Host": "evil.example"})
    assert bad.status_code == 400 and bad.mimetype == "application/json"
    assert client.get("/consumers", headers={"Host": "abc123.execute-api.us-east-1.amazonaws.com"}).status_code == 200
    assert client.get("/consumers", headers={"Host": "127.0.0.1:5000"}).status_code == 200


def test_secret_values_are_redacted_in_every_form_and_error_type_names_never_are(client):
    failures, _ = create_consumer_queues("slack-notifier")
    from urllib.parse import quote

    encoded = quote(SLACK_SECRET, safe="")
    escaped = json.dumps({"url": SLACK_SECRET}).replace("/", "\\/")
    truncated = ("POST " + SLACK_SECRET)[:60]  # a prefix of the secret left at the end by truncation
    for i, message in enumerate([f"POST {SLACK_SECRET} failed; Bearer {CRM_SECRET}", f"url={encoded}",
                                 f"body {escaped}", truncated, truncated + "..."]):
        capture_failures(failures, "slack-notifier", 1, start=i, error_type="SlackWebhookError", message=message)
    bodies = {p: client.get(p).get_data(as_text=True) for p in
              ("/consumers", "/consumers/slack-notifier", "/consumers/slack-notifier/failures")}
    for text in bodies.values():
        assert SLACK_SECRET not in text and CRM_SECRET not in text and encoded not in text
        assert "s3cr3tWebhookValue" not in text and "s3cr3tWebhookValue".lower() not in text.lower()
        assert "hooks.slack.example/services/T000/B" not in text
    status = json.loads(bodies["/consumers/slack-notifier"])
    assert status["topErrorTypes"] == {"SlackWebhookError": 5}  # a key name is never redacted
    messages = sorted(i["errorMessage"] for i in json.loads(bodies["/consumers/slack-notifier/failures"])["items"])
    assert "POST [redacted] failed; Bearer [redacted]" in messages and "url=[redacted]" in messages
    assert 'body {"url": "[redacted]"}' in messages
    assert messages.count("POST [redacted]") == 1 and "POST [redacted]..." in messages


def test_a_deployed_functions_secret_value_is_redacted_inside_failure_messages(client):
    """The API learns a secret value only from the consumer function's environment (not its
    own); once it has read that environment, the value never leaves in any JSON body."""
    function_secret = "https://hooks.slack.example/services/TFN/BFN/onlyInTheFunctionEnv"
    create_function("userstream-dev-slack-notifier", {"FAILURE_POLICY": "soft-fail",
                                                      "SLACK_WEBHOOK_URL": function_secret})
    failures, _ = create_consumer_queues("slack-notifier")
    capture_failures(failures, "slack-notifier", 1, error_type="SlackApiError", message=f"POST {function_secret} 500")
    listing = client.get("/consumers").get_data(as_text=True)  # reads the function's environment
    items = client.get("/consumers/slack-notifier/failures").get_json()["items"]
    assert items[0]["errorMessage"] == "POST [redacted] 500"
    assert function_secret not in listing


def test_messages_the_ledger_does_not_list_are_shown_from_the_queue_depth(client):
    """Lambda's own on-failure records (and anything sent around the capture path) are in the
    queue but not in the ledger: the status says how many, from GetQueueAttributes."""
    failures, _ = create_consumer_queues("crm-sync")
    put_failures(failures, "crm-sync", 2)  # sent directly, not by the capture path
    crm = client.get("/consumers/crm-sync").get_json()
    assert crm["ledger"]["open"] == 0 and crm["failures"]["visible"] == 2
    assert crm["status"]["badge"] == "degraded"
    assert any(r.startswith("2 message(s) in the failure queue the ledger does not list") for r in crm["status"]["reasons"])


def test_page_is_served_with_its_controls(client):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    js = client.get("/static/app.js").get_data(as_text=True)
    assert "Preview (dry run)" in js and "Redrive parked" in js and "Cancel job" in js and "innerHTML" not in js


def test_lambda_entry_point_imports_no_consumer_client_library():
    code = ("import sys, handlers.api as a; assert a.app.name; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('slack_sdk', 'opensearchpy', 'httpx', 'structlog', 'aws_lambda_powertools') "
            "or m.startswith('consumers.') and m != 'consumers.registry' "
            "or m in ('reprocess.worker', 'reprocess.runner', 'reprocess.redrive')]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_health(client):
    assert client.get("/healthz").get_json() == {"ok": True}


def test_routes_are_one_blueprint_and_its_services_are_public():
    from opsapi import Services, create_app, get_services

    app = create_app()
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert endpoints and all(e.startswith("opsapi.") for e in endpoints)
    svc = get_services(app)
    assert isinstance(svc, Services) and svc.ledger.clients is svc.clients
    assert svc.jobs.clients is svc.clients and svc.inspector.clients is svc.clients
