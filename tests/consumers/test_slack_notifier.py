"""slack-notifier against a local Slack webhook receiver and the idempotency table on moto."""
import time

import boto3
import pytest

import consumers.slack_notifier as sn
from streamkit import ConfigError, PermanentError, TransientError, stream_handler
from streamkit.idempotency import COMPLETED, Idempotency
from streamkit.testing import LambdaContext, make_event

from .conftest import rec, sr, v1_user, v2_user


def table_items(table: str) -> dict:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {i["id"]["S"]: i for i in items}


def test_insert_posts_exact_message_once(slack, idempotency_table):
    record = sr("INSERT", v1_user(1), event_id="ev-1")
    sn.handle_record(record)
    assert len(slack.requests) == 1
    req = slack.requests[0]
    assert req.method == "POST" and req.path.startswith("/services/")
    assert req.headers["content-type"].startswith("application/json")
    assert req.json()["text"] == ":tada: New signup: *Ada Lovelace1* (pro plan)"
    assert req.json()["blocks"][1]["elements"][0]["text"] == "user `u1`"
    item = table_items(idempotency_table)["slack-notifier#ev-1"]
    assert item["status"]["S"] == COMPLETED
    # the expiry outlives the failure queue's 14-day retention
    assert int(item["expires_at"]["N"]) >= time.time() + 29 * 86400


def test_duplicate_deliveries_post_once(slack, idempotency_table):
    raw = rec("INSERT", v1_user(1), event_id="ev-dup")
    for _ in range(3):
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-dup"))
    handler = stream_handler("slack-notifier", sn.handle_record, policy="soft-fail")
    assert handler(make_event([raw, raw]), LambdaContext()) == {"batchItemFailures": []}
    assert len(slack.messages) == 1
    sn.handle_record(sr("INSERT", v1_user(2), event_id="ev-other"))  # another record: posts
    assert len(slack.messages) == 2


def test_a_kinesis_change_delivered_twice_posts_once(slack, idempotency_table):
    """Kinesis Data Streams for DynamoDB may deliver one change as two Kinesis records (new
    sequence numbers, same data): the claim is keyed on the DynamoDB change's eventID inside."""
    from streamkit.testing import redeliver

    first = rec("INSERT", v1_user(1), event_id="ev-kinesis", source="kinesis")
    copy = redeliver(first)
    assert first["eventID"] != copy["eventID"]  # Lambda's own Kinesis eventIDs differ
    handler = stream_handler("slack-notifier", sn.handle_record, policy="soft-fail")
    assert handler(make_event([first, copy]), LambdaContext()) == {"batchItemFailures": []}
    assert handler(make_event([redeliver(first)]), LambdaContext()) == {"batchItemFailures": []}
    assert len(slack.messages) == 1 and "slack-notifier#ev-kinesis" in table_items(idempotency_table)


def test_modify_and_remove_are_ignored(slack, idempotency_table):
    sn.handle_record(sr("MODIFY", v1_user(1), old=v1_user(1)))
    sn.handle_record(sr("REMOVE", None, old=v1_user(1)))
    assert slack.requests == [] and table_items(idempotency_table) == {}


def test_429_is_transient_with_retry_after_and_releases_the_lock(slack, idempotency_table):
    slack.fail(429, "rate_limited", headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as info:
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-429"))
    assert info.value.retry_after == 7.0
    assert table_items(idempotency_table) == {}  # released: the retry may post
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-429"))
    assert len(slack.messages) == 1


def test_429_is_retried_by_the_loop_to_one_post(slack, idempotency_table):
    slack.fail(429, "rate_limited", headers={"Retry-After": "0"})
    slack.fail(429, "rate_limited", headers={"Retry-After": "0"})
    handler = stream_handler("slack-notifier", sn.handle_record, policy="soft-fail")
    assert handler(make_event([rec("INSERT", v1_user(1))]), LambdaContext()) == {"batchItemFailures": []}
    assert len(slack.requests) == 3 and len(slack.messages) == 1
    assert handler.loop.last_batch.retried == 2


def test_invalid_payload_is_permanent(slack, idempotency_table, monkeypatch):
    slack.fail(400, "invalid_payload")
    with pytest.raises(PermanentError, match="invalid_payload") as info:
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-400"))
    assert isinstance(info.value, sn.SlackWebhookError) and info.value.status == 400
    assert table_items(idempotency_table) == {}
    # the fake also refuses an empty payload by itself, as Slack does
    with pytest.raises(sn.SlackWebhookError, match="invalid_payload"):
        sn.post({"text": ""})


def test_unreachable_webhook_is_transient(idempotency_table, monkeypatch):
    from local.aws import free_port

    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/services/x")
    with pytest.raises(TransientError, match="unreachable"):
        sn.handle_record(sr("INSERT", v1_user(1)))


def test_live_lock_held_elsewhere_is_transient_and_does_not_post(slack, idempotency_table):
    guard = Idempotency("slack-notifier")
    assert guard.claim("slack-notifier#ev-busy") is not None  # another invocation holds it
    with pytest.raises(TransientError, match="another invocation"):
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-busy"))
    assert slack.requests == []


def test_expired_record_is_taken_over(slack, idempotency_table):
    old = Idempotency("slack-notifier", clock=lambda: time.time() - 31 * 86400)  # done, but TTL not yet swept
    token = old.claim("slack-notifier#ev-old")
    old.complete("slack-notifier#ev-old", token)
    sn.handle_record(sr("INSERT", v1_user(2), event_id="ev-old"))
    assert len(slack.messages) == 1


def test_webhook_url_from_ssm_parameter(slack, idempotency_table, monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    boto3.client("ssm").put_parameter(Name="/userstream/dev/slack-webhook-url", Value=slack.webhook_url,
                                      Type="SecureString")
    monkeypatch.setenv("SLACK_WEBHOOK_URL_PARAM", "/userstream/dev/slack-webhook-url")
    sn.handle_record(sr("INSERT", v1_user(1)))
    assert len(slack.messages) == 1


def test_missing_settings_are_config_errors(slack, idempotency_table, monkeypatch):
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE"):
        sn.handle_record(sr("INSERT", v1_user(1)))
    monkeypatch.setenv("IDEMPOTENCY_TABLE", idempotency_table)
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL_PARAM"):
        sn.handle_record(sr("INSERT", v1_user(1)))
    assert table_items(idempotency_table) == {}  # the failed attempt released its claim


def test_v2_items_post_with_the_fix(slack, idempotency_table):
    sn.handle_record(sr("INSERT", v2_user(2)))
    assert slack.messages[0]["text"] == ":tada: New signup: *Grace Hopper2* (free plan)"


# --- at most once: what each failure proves (docs/consumers.md, "At most once") ----------------
# Faults are injected where they happen: in the HTTP transport (the fake Slack misbehaves, or
# nothing listens) and in botocore (DynamoDB answers 500). Nothing of ours is mocked.


def emf_counts(out: str, metric: str) -> int:
    """Sum of ``metric`` over the EMF documents printed to stdout."""
    import json

    total = 0
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            if doc.get("consumer") == "slack-notifier" and metric in doc:
                total += int(doc[metric] if not isinstance(doc[metric], list) else sum(doc[metric]))
    return total


def claim_of(table: str, event_id: str) -> dict:
    return table_items(table)[f"slack-notifier#{event_id}"]


def fail_dynamodb(operation: str, times: int | None = None, exc: type[BaseException] | None = None):
    """Make DynamoDB ``operation`` answer 500 (past botocore's retries), or raise ``exc`` in its
    place (a crash at that moment); ``times`` calls, or all. Returns the unregister function."""
    from botocore.awsrequest import AWSResponse

    import streamkit.idempotency as idem

    left = [times]

    class Raw:
        def stream(self, **kw):
            yield b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}'

    def hook(request, **kwargs):
        if left[0] is not None:
            if left[0] <= 0:
                return None
            left[0] -= 1
        if exc is not None:
            raise exc("injected crash")
        return AWSResponse(request.url, 500, {}, Raw())

    client = idem._dynamodb()
    client.meta.events.register(f"before-send.dynamodb.{operation}", hook)
    return lambda: client.meta.events.unregister(f"before-send.dynamodb.{operation}", hook)


@pytest.fixture
def quick_timeout(monkeypatch):
    monkeypatch.setenv("SLACK_TIMEOUT_S", "0.5")


@pytest.mark.parametrize("fault", ["read-timeout", "reset-after-receiving", "500-after-posting"])
def test_ambiguous_outcomes_count_as_sent_and_are_never_retried(fault, slack, idempotency_table, quick_timeout, capsys):
    """Slack got the post, then the answer was lost: the loop must not retry (73 of the 79
    double posts of the fault run were this), and a redelivery must not post either."""
    if fault == "read-timeout":
        slack.hang(5)
    elif fault == "reset-after-receiving":
        slack.reset()
    else:
        slack.fail(500, "internal_error", process=True)
    handler = stream_handler("slack-notifier", sn.handle_record, policy="soft-fail")
    raw = rec("INSERT", v1_user(1), event_id="ev-amb")
    assert handler(make_event([raw]), LambdaContext()) == {"batchItemFailures": []}
    batch = handler.loop.last_batch
    assert (batch.handled, batch.retried, batch.dropped) == (1, 0, 0)  # counted as done, not retried
    assert len(slack.requests) == 1 and len(slack.messages) == 1
    claim = claim_of(idempotency_table, "ev-amb")
    assert claim["status"]["S"] == COMPLETED and claim["doubtful"]["S"]
    out = capsys.readouterr().out
    assert '"doubtful_send"' in out and emf_counts(out, "doubtful_sends") == 1

    assert handler(make_event([raw]), LambdaContext()) == {"batchItemFailures": []}  # redelivered
    assert len(slack.requests) == 1 and len(slack.messages) == 1


def test_a_500_before_posting_is_doubtful_too(slack, idempotency_table):
    """A 5xx is an answer from a server that had the request: it cannot prove nothing was
    posted, so it is not retried (the message is lost, and counted) rather than risk two."""
    slack.fail(500, "internal_error")
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-500"))
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-500"))
    assert len(slack.requests) == 1 and slack.messages == []
    assert "500" in claim_of(idempotency_table, "ev-500")["doubtful"]["S"]


@pytest.mark.parametrize("where", ["connection-refused", "dns-failure"])
def test_failures_before_the_post_release_the_claim_and_a_retry_posts_once(where, slack, idempotency_table, monkeypatch):
    from local.aws import free_port

    bad = (f"http://127.0.0.1:{free_port()}/services/x" if where == "connection-refused"
           else "http://hooks.slack.invalid/services/x")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", bad)
    with pytest.raises(TransientError, match="unreachable"):
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-pre"))
    assert table_items(idempotency_table) == {}  # released: nothing can have been posted
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-pre"))
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-pre"))
    assert len(slack.messages) == 1


def test_failure_to_mark_completed_still_reports_success_and_never_reposts(slack, idempotency_table, monkeypatch, capsys):
    """The post happened; the claim could not be completed and stays IN_PROGRESS. A redelivery
    inside the lock timeout is refused (transient); one after it finds the claim abandoned and
    counts it as a doubtful send: never a second post."""
    undo = fail_dynamodb("UpdateItem", times=4)  # botocore's standard retries included
    try:
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-x"))  # no exception
    finally:
        undo()
    assert len(slack.messages) == 1
    assert claim_of(idempotency_table, "ev-x")["status"]["S"] == "IN_PROGRESS"
    with pytest.raises(TransientError):
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-x"))
    assert len(slack.messages) == 1
    capsys.readouterr()

    monkeypatch.setattr(sn._guard, "clock", lambda: time.time() + 61)  # past the 60 s lock timeout
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-x"))
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-x"))
    assert len(slack.messages) == 1
    claim = claim_of(idempotency_table, "ev-x")
    assert claim["status"]["S"] == COMPLETED and "never completed" in claim["doubtful"]["S"]
    assert emf_counts(capsys.readouterr().out, "doubtful_sends") == 1  # counted once, not per redelivery


def test_a_crash_right_after_the_post_never_leads_to_a_second_post(slack, idempotency_table, monkeypatch):
    """The process dies between the post and recording it (a Lambda timeout at the worst
    moment): the redelivered batch, in time and after the lock timeout, does not post again."""
    undo = fail_dynamodb("UpdateItem", exc=SystemExit)
    try:
        with pytest.raises(SystemExit):
            sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-crash"))
    finally:
        undo()
    assert len(slack.messages) == 1 and claim_of(idempotency_table, "ev-crash")["status"]["S"] == "IN_PROGRESS"
    monkeypatch.setenv("MAX_TRANSIENT_RETRIES", "0")  # (no waiting out the live claim in-process)
    handler = stream_handler("slack-notifier", sn.handle_record, policy="soft-fail")
    raw = rec("INSERT", v1_user(1), event_id="ev-crash")
    handler(make_event([raw]), LambdaContext())  # inside the lock: refused, soft-fail drops it
    assert handler.loop.last_batch.dropped == 1
    monkeypatch.setattr(sn._guard, "clock", lambda: time.time() + 61)
    assert handler(make_event([raw]), LambdaContext()) == {"batchItemFailures": []}
    assert handler.loop.last_batch.handled == 1
    assert len(slack.messages) == 1


def test_a_claim_that_cannot_be_written_posts_nothing(slack, idempotency_table):
    undo = fail_dynamodb("PutItem")
    try:
        with pytest.raises(Exception, match="InternalServerError"):
            sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-noclaim"))
    finally:
        undo()
    assert slack.requests == []
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-noclaim"))
    assert len(slack.messages) == 1


def test_schema_error_fails_before_the_claim_so_the_fix_posts(slack, idempotency_table, monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    with pytest.raises(KeyError):
        sn.handle_record(sr("INSERT", v2_user(2), event_id="ev-v2"))
    assert table_items(idempotency_table) == {} and slack.requests == []
    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")
    sn.handle_record(sr("INSERT", v2_user(2), event_id="ev-v2"))
    assert len(slack.messages) == 1
