"""The CLI with a registry consumer's own handle_record (no --handler): slack-notifier,
its idempotency guard and a local Slack webhook."""
from __future__ import annotations

import json

import pytest

from local.fakes import FakeSlack
from streamkit import StreamRecord
from tests.support.aws import create_consumer_queues, create_idempotency_table, queue_count
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item

from .conftest import run_cli


@pytest.fixture
def slack(env, monkeypatch):
    import consumers.slack_notifier as sn
    import streamkit.idempotency as idem

    monkeypatch.setenv("IDEMPOTENCY_TABLE", create_idempotency_table("idempotency"))
    for var in ("SLACK_WEBHOOK_URL_PARAM", "USER_SCHEMA_MODE"):
        monkeypatch.delenv(var, raising=False)
    sn._clients.clear()
    idem.reset_client()
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
        yield fake
    sn._clients.clear()


def test_slack_notifier_posts_each_signup_once_across_stream_and_reprocess(slack):
    import consumers.slack_notifier as sn

    failures, parking = create_consumer_queues("slack-notifier")
    posted = insert(user_item(1))
    fresh = insert(user_item(2))
    sn.handle_record(StreamRecord(posted))  # the stream path posted it, then it was captured anyway
    assert len(slack.messages) == 1
    capture(failures, [envelope(posted, "slack-notifier"), envelope(fresh, "slack-notifier"), envelope(fresh, "slack-notifier")])

    out = run_cli("--consumer", "slack-notifier", "--json", "--wait-seconds", "0")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["mode"] == "replay" and (s["taken"], s["succeeded"]) == (3, 3)
    assert len(slack.messages) == 2  # user 1 once (stream), user 2 once (reprocess)
    assert "Ada Number2" in slack.messages[1]["text"]
    assert queue_count(failures) == 0 and queue_count(parking) == 0
