"""The schema change, end to end through ``stream_handler`` with each consumer's default policy.

v1 consumer code (``USER_SCHEMA_MODE=legacy``) meets a v2 item (firstname + lastname) and
raises KeyError; what happens next is each policy's story. Then the fix is deployed (the
switch flips, same process) and the failed record is processed again. Every record is
accounted for: in = handled + captured + reported for retry (+ dropped by soft-fail).
"""

import boto3
import pytest

import consumers.crm_sync as cs
import consumers.search_indexer as si
import consumers.slack_notifier as sn
from consumers.registry import get_consumer
from streamkit import StreamRecord, stream_handler
from streamkit.envelope import parse_envelope
from streamkit.testing import LambdaContext, make_event
from tests.support.aws import create_consumer_queues, create_users_table
from tests.support.users import put_users

from .conftest import rec, v1_user, v2_user


def batch_of_three():
    """v1, v2 (the new schema), v1: the middle one breaks v1 code."""
    return [rec("INSERT", v1_user(1)), rec("INSERT", v2_user(2)), rec("INSERT", v1_user(3))]


def handler_for(name: str, handle_record):
    return stream_handler(name, handle_record, policy=get_consumer(name).default_policy)


def test_search_indexer_captures_the_keyerror_then_the_fix_indexes_it(aws, tmp_path, monkeypatch):
    sqs = boto3.client("sqs")
    queue_url, _ = create_consumer_queues("search-indexer")
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    monkeypatch.setenv("SEARCH_URL", f"sqlite:///{tmp_path}/search.sqlite3")
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    handler = handler_for("search-indexer", si.handle_record)
    records = batch_of_three()

    assert handler(make_event(records), LambdaContext()) == {"batchItemFailures": []}
    msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    assert len(msgs) == 1
    envelope = parse_envelope(msgs[0]["Body"])
    assert envelope.consumer == "search-indexer"
    assert envelope.error["type"] == "KeyError" and "fullname" in envelope.error["message"]
    assert envelope.record == records[1]  # captured unchanged
    assert msgs[0]["MessageAttributes"]["errorType"]["StringValue"] == "KeyError"
    assert sorted(h["user_id"] for h in si.search("ada")) == ["u1", "u3"]  # 3 in = 2 handled + 1 captured

    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")  # the fix is deployed
    si.handle_record(StreamRecord(envelope.record))  # what the reprocess worker does
    assert [h["name"] for h in si.search("grace")] == ["Grace Hopper2"]


def test_slack_notifier_soft_fails_then_a_replay_posts_only_the_missing_one(aws, slack, idempotency_table, monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    handler = handler_for("slack-notifier", sn.handle_record)
    records = batch_of_three()

    assert handler(make_event(records), LambdaContext()) == {"batchItemFailures": []}  # soft-fail: moves on
    assert [m["text"] for m in slack.messages] == [":tada: New signup: *Ada Lovelace1* (pro plan)",
                                                   ":tada: New signup: *Ada Lovelace3* (pro plan)"]

    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")
    # Replaying the whole batch (a redelivery, or replay-mode reprocessing) posts only the
    # record that failed: the other two are guarded by their (consumer, eventID) keys.
    assert handler(make_event(records), LambdaContext()) == {"batchItemFailures": []}
    assert len(slack.messages) == 3
    assert slack.messages[2]["text"] == ":tada: New signup: *Grace Hopper2* (free plan)"


def test_crm_sync_hard_fails_blocks_the_shard_then_the_fix_unblocks_it(crm, monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    handler = handler_for("crm-sync", cs.handle_record)
    records = batch_of_three()

    out = handler(make_event(records), LambdaContext())
    blocked = [r["dynamodb"]["SequenceNumber"] for r in records[1:]]  # Lambda resumes at the first failure
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == blocked
    assert len(handler.loop.last_batch.reported) == 2  # 3 in = 1 handled + 2 reported
    assert [c["properties"]["email"] for c in crm.active()] == ["user1@example.com"]

    # Lambda retries from the reported record while it keeps failing; the shard stays blocked.
    retry = records[1:]
    assert handler(make_event(retry), LambdaContext())["batchItemFailures"] != []
    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")  # the fix is deployed
    assert handler(make_event(retry), LambdaContext()) == {"batchItemFailures": []}
    assert sorted(c["properties"]["email"] for c in crm.active()) == [
        "user1@example.com", "user2@example.com", "user3@example.com"]
    assert crm.by_email("user2@example.com")["properties"]["lastname"] == "Hopper2"


@pytest.mark.parametrize("name", ["search-indexer", "slack-notifier", "crm-sync"])
def test_default_policies_are_the_registry_ones(name):
    assert get_consumer(name).load().__module__ == f"consumers.{name.replace('-', '_')}"


def test_search_indexer_story_closes_through_the_reprocess_worker(aws, tmp_path, monkeypatch):
    """Capture under v1 code, deploy the fix, drain the failure queue with the reprocess worker
    in the consumer's default (latest) mode: the real handle_record indexes the v2 user."""
    from reprocess.worker import drain

    failures, _ = create_consumer_queues("search-indexer")
    create_users_table("users", stream=False)
    items = [v1_user(1), v2_user(2), v1_user(3)]
    put_users(items, "users")
    monkeypatch.setenv("USERS_TABLE", "users")
    monkeypatch.setenv("FAILURE_QUEUE_URL", failures)
    monkeypatch.setenv("SEARCH_URL", f"sqlite:///{tmp_path}/search.sqlite3")
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    handler = handler_for("search-indexer", si.handle_record)
    assert handler(make_event([rec("INSERT", i) for i in items]), LambdaContext()) == {"batchItemFailures": []}
    assert si.search("grace") == []

    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")
    summary = drain("search-indexer", wait_time_s=0)
    assert summary.mode == "latest" and (summary.taken, summary.succeeded) == (1, 1)
    assert [h["user_id"] for h in si.search("grace")] == ["u2"]
    assert sorted(h["user_id"] for h in si.search("user")) == ["u1", "u2", "u3"]
