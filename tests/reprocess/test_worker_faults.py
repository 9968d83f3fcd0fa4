"""The worker under its own AWS faults (issue 14, items 1, 3, 4): every disposition path, with
the fault injected at the AWS call (``tests.awsfaults``: a botocore ``before-send`` hook on the
worker's own clients, past botocore's retries; moto behind it).

The rules checked: a message is deleted only when every record it stands for was handled,
re-sent (SQS accepting the copy) or parked (SQS accepting it); an SQS call of the worker's own
that fails (receive, send, delete) ends the run cleanly: a summary, exit status 1, and every
message it still holds made visible again; what could not be deleted counts as remaining.
"""
from __future__ import annotations

import json

import boto3
import pytest

from reprocess.worker import drain
from tests.awsfaults import AwsFault, aws_faults
from tests.support.aws import create_consumer_queues, queue_depth, take_all
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item

from . import sample_consumers
from .conftest import index_items, run_cli
from .test_backstop import on_failure_message, stream  # noqa: F401  (the stream fixture)

FAST = dict(wait_time_s=0)
PAST_RETRIES = 12  # more calls than botocore's retries make


def conserved(s) -> bool:
    return s.taken == s.succeeded + s.still_failing + s.parked and s.conserved


# --- item 1: an on-failure message whose range cannot be read is never deleted ---------------------
@pytest.mark.parametrize("operation,kind,times", [
    ("GetShardIterator", "denied", 1),  # the minimal reproduction of the issue: AccessDenied once
    ("GetShardIterator", "throttle", PAST_RETRIES),
    ("GetRecords", "500", PAST_RETRIES),
    ("GetRecords", "connection", PAST_RETRIES),
])
def test_a_range_that_cannot_be_read_leaves_the_message_then_the_next_run_handles_it(
        stream, index_table, operation, kind, times):  # noqa: F811
    failures, parking = create_consumer_queues("search-indexer")
    body = json.dumps(on_failure_message(stream, 1, 3))
    capture_raw = boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=body)
    assert capture_raw["MessageId"]

    with aws_faults(AwsFault("test", "dynamodb-streams", operation, kind, times=times)):
        first = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (first.taken, first.succeeded, first.still_failing, first.resent, first.parked) == (1, 0, 1, 0, 0)
    assert conserved(first) and first.exit_code == 1
    assert any("left in the queue" in n for n in first.notes), first.notes  # reported in the summary
    assert queue_depth(failures) == (1, 0) and queue_depth(parking) == (0, 0)  # kept, and visible again at once
    assert index_items() == {}

    second = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (second.taken, second.succeeded, second.exit_code) == (1, 1, 0) and second.stream_records == 3
    assert sorted(index_items()) == ["u0001", "u0002", "u0003"]
    assert queue_depth(failures) == (0, 0)


def test_records_that_fail_again_are_captured_before_the_message_is_deleted(stream, index_table):  # noqa: F811
    """RESENT for an on-failure message: its failed records become envelopes (SQS accepting
    them) and only then is the metadata deleted; when SQS refuses them, it stays."""
    failures, _ = create_consumer_queues("search-indexer")
    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=json.dumps(on_failure_message(stream, 0, 1)))
    with aws_faults(AwsFault("test", "sqs", "SendMessageBatch", "500", times=PAST_RETRIES)):
        refused = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, **FAST)
    assert (refused.still_failing, refused.resent, refused.exit_code) == (1, 0, 1) and conserved(refused)
    assert refused.aborted and "SendMessageBatch" in refused.aborted
    (left,) = take_all(failures)
    assert "DDBStreamBatchInfo" in left["body"]  # the metadata itself, untouched

    boto3.client("sqs").send_message(QueueUrl=failures, MessageBody=left["raw"])
    accepted = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, **FAST)
    assert (accepted.still_failing, accepted.resent, accepted.exit_code) == (1, 1, 1) and not accepted.aborted
    copies = take_all(failures)
    assert sorted(c["body"]["record"]["dynamodb"]["SequenceNumber"] for c in copies) == sorted(
        r["dynamodb"]["SequenceNumber"] for r in stream["records"][:2])
    assert {c["body"]["attempts"] for c in copies} == {2}


def test_a_park_that_sqs_refuses_leaves_the_message(queues, index_table):
    failures, parking = queues
    capture(failures, [envelope(insert(user_item(1)), attempts=4)])  # the 5th attempt parks it
    with aws_faults(AwsFault("test", "sqs", "SendMessageBatch", "throttle", times=PAST_RETRIES, target="parking")):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, **FAST)
    assert (s.taken, s.parked, s.still_failing, s.exit_code) == (1, 0, 1, 1) and conserved(s)
    assert queue_depth(parking) == (0, 0)
    (left,) = take_all(failures)
    assert left["body"]["attempts"] == 4  # the original, untouched

    capture(failures, [envelope(insert(user_item(1)), attempts=4)])
    parked = drain("search-indexer", mode="replay", handle_record=sample_consumers.always_fails, **FAST)
    assert (parked.parked, parked.exit_code) == (1, 1) and queue_depth(failures) == (0, 0) and queue_depth(parking) == (1, 0)


# --- items 3 and 4: the worker's own SQS calls fail -------------------------------------------------
def test_a_receive_that_fails_ends_the_run_with_a_summary_and_exit_1(queues, index_table):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    with aws_faults(AwsFault("test", "sqs", "ReceiveMessage", "throttle", times=PAST_RETRIES)):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert s.taken == 0 and s.exit_code == 1 and conserved(s)
    assert s.aborted.startswith("ReceiveMessage failed: ClientError") and "Throttling" in s.aborted
    assert s.stopped_by.startswith("aborted")
    assert queue_depth(failures) == (3, 0) and index_items() == {}


def test_a_read_ahead_that_fails_keeps_what_was_settled_and_hides_nothing(queues, index_table):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(15)])  # two receives of 10
    with aws_faults(AwsFault("test", "sqs", "ReceiveMessage", "500", times=PAST_RETRIES, after=1)):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert s.aborted and s.exit_code == 1 and conserved(s)
    assert s.succeeded == s.taken and s.taken > 0  # the first round was handled and deleted
    assert len(index_items()) == s.taken
    assert queue_depth(failures) == (15 - s.taken, 0)  # the rest untouched, nothing hidden


def test_parallel_receives_one_failing_release_what_the_others_received(queues, index_table):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(20)])
    with aws_faults(AwsFault("test", "sqs", "ReceiveMessage", "denied", times=1, after=1)):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, concurrency=4,
                  receives_per_round=2, **FAST)
    assert s.aborted and "AccessDenied" in s.aborted and s.exit_code == 1
    assert s.taken == 0 and conserved(s)
    assert queue_depth(failures) == (20, 0)  # the 10 the other call received are visible again at once


def test_a_delete_that_fails_ends_the_run_counts_as_remaining_and_releases(queues, index_table):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    with aws_faults(AwsFault("test", "sqs", "DeleteMessageBatch", "throttle", times=PAST_RETRIES)):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.taken, s.succeeded, s.delete_failures) == (3, 3, 3) and conserved(s)
    assert s.exit_code == 1 and "DeleteMessageBatch" in s.aborted  # not 0: the messages are still there
    assert queue_depth(failures) == (3, 0)  # visible again at once, not hidden for the visibility timeout
    again = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (again.succeeded, again.exit_code) == (3, 0) and queue_depth(failures) == (0, 0)  # handled again: idempotent


def test_a_release_that_fails_is_counted(queues, index_table):
    """SQS is failing: the deletes fail, and so does making the messages visible again. The
    summary says how many stay hidden until their visibility timeout."""
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(2)])
    with aws_faults(AwsFault("test", "sqs", "DeleteMessageBatch", "500", times=PAST_RETRIES),
                    AwsFault("test", "sqs", "ChangeMessageVisibilityBatch", "500", times=PAST_RETRIES)):
        s = drain("search-indexer", mode="replay", handle_record=sample_consumers.index_v2, **FAST)
    assert (s.succeeded, s.delete_failures, s.unreleased, s.exit_code) == (2, 2, 2, 1)
    assert queue_depth(failures) == (0, 2)
    assert any("could not release" in n for n in s.notes)
    assert "hidden   2 message(s)" in s.to_text()


def test_the_cli_prints_a_summary_and_exits_1_when_sqs_is_unreachable(env):
    """A whole-service outage: nothing listens at the endpoint. No traceback, exit 1."""
    from local.aws import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    out = run_cli("--consumer", "search-indexer", "--mode", "replay", "--queue-url", f"{dead}/123456789012/q",
                  "--wait-seconds", "0", "--json", extra_env={"AWS_ENDPOINT_URL": dead})
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    summary = json.loads(out.stdout)
    assert summary["exit_code"] == 1 and summary["aborted"].startswith("ReceiveMessage failed")
    assert summary["taken"] == 0
