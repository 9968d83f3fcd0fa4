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


def test_5xx_is_transient_and_retried_by_the_loop_to_one_post(slack, idempotency_table):
    slack.fail(500, "internal_error")
    slack.fail(429, "rate_limited", headers={"Retry-After": "0"})
    handler = stream_handler("slack-notifier", sn.handle_record, policy="soft-fail")
    assert handler(make_event([rec("INSERT", v1_user(1))]), LambdaContext()) == {"batchItemFailures": []}
    assert len(slack.requests) == 3 and len(slack.messages) == 1


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
    from tests.conftest import free_port

    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/services/x")
    with pytest.raises(TransientError, match="unreachable"):
        sn.handle_record(sr("INSERT", v1_user(1)))


def test_live_lock_held_elsewhere_is_transient_and_does_not_post(slack, idempotency_table):
    guard = Idempotency("slack-notifier")
    assert guard.claim("slack-notifier#ev-busy") is not None  # another invocation holds it
    with pytest.raises(TransientError, match="another invocation"):
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-busy"))
    assert slack.requests == []


def test_stale_lock_and_expired_record_are_taken_over(slack, idempotency_table):
    past = Idempotency("slack-notifier", clock=lambda: time.time() - 3600)  # a holder that died an hour ago
    past.claim("slack-notifier#ev-stale")
    sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-stale"))
    assert len(slack.messages) == 1
    old = Idempotency("slack-notifier", clock=lambda: time.time() - 31 * 86400)  # done, but TTL not yet swept
    token = old.claim("slack-notifier#ev-old")
    old.complete("slack-notifier#ev-old", token)
    sn.handle_record(sr("INSERT", v1_user(2), event_id="ev-old"))
    assert len(slack.messages) == 2


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


def test_failure_to_mark_completed_still_reports_success_and_never_reposts(slack, idempotency_table):
    """The post happened; failing the record would invite a second post. The claim stays
    IN_PROGRESS, so a redelivery inside the lock timeout is refused (transient), not reposted."""
    from botocore.awsrequest import AWSResponse

    import streamkit.idempotency as idem

    class Raw:
        def stream(self, **kw):
            yield b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}'

    def fail_update(request, **kwargs):
        return AWSResponse(request.url, 500, {}, Raw())

    client = idem._dynamodb()
    client.meta.events.register("before-send.dynamodb.UpdateItem", fail_update)
    try:
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-x"))  # no exception
    finally:
        client.meta.events.unregister("before-send.dynamodb.UpdateItem", fail_update)
    assert len(slack.messages) == 1
    assert table_items(idempotency_table)["slack-notifier#ev-x"]["status"]["S"] == "IN_PROGRESS"
    with pytest.raises(TransientError):
        sn.handle_record(sr("INSERT", v1_user(1), event_id="ev-x"))
    assert len(slack.messages) == 1
