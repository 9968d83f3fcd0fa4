"""Rewind: a time range of the users table's stream (moto) through a consumer's handle_record:
exactly the records in the range, in windows, resumable, latest mode, past retention refused."""
from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from reprocess import rewind
from reprocess.checkpoints import FileStore
from reprocess.jobrun import run_job
from reprocess.options import RewindOptions
from streamkit.timefmt import iso
from tests.support.aws import (
    create_consumer_queues,
    create_idempotency_table,
    create_users_table,
    stream_records,
    take_all,
)

from .conftest import run_cli
from .jobsupport import user_item


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def stream(env, monkeypatch, tmp_path):
    """A users table with a NEW_AND_OLD_IMAGES stream, written by one thread (moto may repeat
    sequence numbers under concurrent writers), and both consumers' queues."""
    arn = create_users_table("users", stream=True)
    monkeypatch.setenv("USERS_TABLE", "users")
    for consumer in ("search-indexer", "crm-sync"):
        create_consumer_queues(consumer)
    ddb = boto3.client("dynamodb")
    return {"ddb": ddb, "arn": arn, "store": FileStore(tmp_path / "jobs")}


_tables: dict[str, object] = {}


def put(i: int, **extra) -> None:
    """One write (a boto3 resource costs ~50 ms to make: one per endpoint)."""
    import os

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    table = _tables.get(endpoint) or _tables.setdefault(endpoint, boto3.resource("dynamodb").Table("users"))
    table.put_item(Item={**user_item(i), **extra})


def recorder(seen: list, fail=lambda record: False):
    lock = threading.Lock()

    def handle(record) -> None:
        with lock:
            seen.append(record)
        if fail(record):
            raise KeyError("fullname")

    return handle


def test_a_rewind_window_handles_exactly_the_records_in_the_window(stream):
    """Records before --since are skipped, from --until on the shard stops; in between every
    record runs once, as Lambda would deliver it, in stream order, across 1-second windows."""
    ddb = stream["ddb"]
    for i in range(5):
        put(i)  # before the range
    time.sleep(0.2)
    since = now()
    time.sleep(0.05)
    for i in range(5, 10):
        put(i)
    time.sleep(1.1)  # the next records fall in a later window
    ddb.update_item(TableName="users", Key={"user_id": {"S": "u00001"}}, UpdateExpression="SET #p = :p",
                    ExpressionAttributeNames={"#p": "plan"}, ExpressionAttributeValues={":p": {"S": "team"}})
    ddb.delete_item(TableName="users", Key={"user_id": {"S": "u00002"}})
    time.sleep(0.05)
    until = now()
    time.sleep(0.2)
    for i in range(10, 13):
        put(i)  # after the range

    expected = [r for r in stream_records(stream["arn"])
                if since <= rewind.SOURCES["dynamodb"].created(r) < until]
    assert len(expected) == 7
    seen: list = []
    summary = run_job(RewindOptions(consumer="search-indexer", since=since, until=until, window_s=1,
                                    mode="replay"), store=stream["store"], handle_record=recorder(seen))
    assert summary["status"] == "succeeded" and summary["exit_code"] == 0, summary
    assert [r.event_id for r in seen] == [r["eventID"] for r in expected]
    assert [r.sequence_number for r in seen] == [r["dynamodb"]["SequenceNumber"] for r in expected]
    assert [r.event_name for r in seen] == ["INSERT"] * 5 + ["MODIFY", "REMOVE"]
    assert all(r.source_arn == stream["arn"] and r.raw["eventVersion"] == "1.1" for r in seen)
    assert seen[-1].old_image["user_id"] == "u00002" and seen[-1].new_image is None
    assert summary["taken"] == summary["handled"] == 7 and summary["skipped"] == 5
    assert summary["read"] == 12  # it stopped at the first record at or after --until
    assert summary["source"]["windows"] >= 2 and summary["by_event"] == {"INSERT": 5, "MODIFY": 1, "REMOVE": 1}


def test_a_rewind_past_retention_is_refused_clearly(stream, tmp_path):
    put(1)
    out = run_cli("rewind", "--consumer", "search-indexer", "--since", iso(now() - timedelta(hours=25)),
                  "--checkpoints", str(tmp_path / "jobs"))
    assert out.returncode == 2, out.stderr
    oldest = out.stderr.split("stream can hold (")[1].split(":")[0:3]
    assert "is before the oldest record the stream can hold" in out.stderr
    assert "DynamoDB Streams keep records for 24 hours" in out.stderr and "backfill" in out.stderr
    named = datetime.fromisoformat(":".join(oldest).replace("Z", "+00:00"))
    assert abs((named - (now() - timedelta(hours=24))).total_seconds()) < 120  # names the oldest time
    assert not (tmp_path / "jobs").exists()  # no job was started


def test_retention_is_24_hours_and_a_younger_stream_is_no_loss(stream):
    """A day and a half after the stream was created, the oldest time available is now - 24 h;
    a range that starts before a young stream began is fine (with a note)."""
    young = rewind.plan(boto3.client("dynamodbstreams"), stream["arn"], now() - timedelta(hours=2), now(), 900)
    assert "the stream began at" in young["notes"][0]
    streams = boto3.client("dynamodbstreams")
    later = now() + timedelta(hours=36)
    with pytest.raises(rewind.RetentionError) as err:
        rewind.plan(streams, stream["arn"], later - timedelta(hours=25), later, 900, now=later)
    oldest = iso(later - timedelta(hours=24))
    assert f"({oldest}: DynamoDB Streams keep records for 24 hours)" in str(err.value)
    ok = rewind.plan(streams, stream["arn"], later - timedelta(hours=23), later, 3600, now=later)
    assert ok["windows"] == 23 and ok["oldestAvailable"] == oldest


def test_a_stopped_rewind_resumes_where_it_stopped(stream):
    since = now()
    time.sleep(0.05)
    for i in range(250):
        put(i)
    seen: list = []
    stop = threading.Event()
    first_handler = recorder(seen)

    def stop_at_120(record) -> None:
        first_handler(record)
        if len(seen) == 120:
            stop.set()

    opts = RewindOptions(consumer="search-indexer", since=since, until=now(), mode="replay")
    first = run_job(opts, store=stream["store"], handle_record=stop_at_120, stop=stop, job_id="rw")
    assert first["status"] == "paused" and first["taken"] == 120 and first["exit_code"] == 1
    second = run_job(opts, store=stream["store"], handle_record=recorder(seen), resume="rw")
    assert second["status"] == "succeeded" and second["taken"] == second["handled"] == 250
    assert [r.keys["user_id"] for r in seen] == [f"u{i:05d}" for i in range(250)]  # each once, in order


def test_a_record_made_just_before_until_is_in_the_range(stream):
    """--until is stored as text with milliseconds: a record made in the same millisecond as
    ``until`` but before it is still in ``[since, until)`` (moto's record times have
    microseconds; this was the 249-of-250 flake of the resume test: its ``until`` came right
    after the last write)."""
    since = now()
    time.sleep(0.05)
    for i in range(3):
        put(i)
    last = rewind.SOURCES["dynamodb"].created(stream_records(stream["arn"])[-1])
    until = last + timedelta(microseconds=1)  # just after the last record, inside its millisecond
    if until.microsecond % 1000 == 0:  # the one case where truncation cannot show (1 in 1000)
        until += timedelta(microseconds=1)
    seen: list = []
    summary = run_job(RewindOptions(consumer="search-indexer", since=since, until=until, mode="replay"),
                      store=stream["store"], handle_record=recorder(seen))
    assert summary["taken"] == summary["handled"] == 3, summary
    assert [r.keys["user_id"] for r in seen] == ["u00000", "u00001", "u00002"]
    assert datetime.fromisoformat(summary["source"]["until"].replace("Z", "+00:00")) >= until


def test_a_rewind_stopped_inside_the_last_batch_of_its_range_resumes_with_the_rest(stream):
    """The shard's last batch is the one read up to the tip (or to --until): a stop inside it
    must not mark the shard done, or the resume skips the records after the stop."""
    since = now()
    time.sleep(0.05)
    for i in range(30):  # fewer than a batch: the one batch is read to the tip
        put(i)
    seen: list = []
    stop = threading.Event()
    first_handler = recorder(seen)

    def stop_at_20(record) -> None:
        first_handler(record)
        if len(seen) == 20:
            stop.set()

    opts = RewindOptions(consumer="search-indexer", since=since, until=now(), mode="replay")
    first = run_job(opts, store=stream["store"], handle_record=stop_at_20, stop=stop, job_id="rw-last")
    assert first["status"] == "paused" and first["taken"] == 20
    second = run_job(opts, store=stream["store"], handle_record=recorder(seen), resume="rw-last")
    assert second["status"] == "succeeded" and second["taken"] == second["handled"] == 30
    assert [r.keys["user_id"] for r in seen] == [f"u{i:05d}" for i in range(30)]  # each once, in order


def test_failures_are_captured_with_the_stream_record_and_attempts(stream):
    since = now()
    time.sleep(0.05)
    for i in range(20):
        put(i)
    seen: list = []
    summary = run_job(RewindOptions(consumer="search-indexer", since=since, mode="replay"), store=stream["store"],
                      handle_record=recorder(seen, fail=lambda r: r.keys["user_id"] in ("u00003", "u00011")))
    assert summary["exit_code"] == 1 and summary["status"] == "finished-with-failures"
    assert summary["taken"] == 20 == summary["handled"] + summary["captured"] and summary["captured"] == 2
    queue = boto3.client("sqs").get_queue_url(QueueName="userstream-dev-search-indexer-failures")["QueueUrl"]
    messages = take_all(queue)
    by_key = {m["body"]["record"]["dynamodb"]["Keys"]["user_id"]["S"]: m["body"] for m in messages}
    assert set(by_key) == {"u00003", "u00011"}
    originals = {r["dynamodb"]["Keys"]["user_id"]["S"]: r for r in stream_records(stream["arn"])}
    for uid, body in by_key.items():
        assert body["attempts"] == 1 and body["error"]["type"] == "KeyError"
        assert body["record"]["eventID"] == originals[uid]["eventID"]
        assert body["record"]["dynamodb"]["SequenceNumber"] == originals[uid]["dynamodb"]["SequenceNumber"]


def test_a_dry_run_counts_the_range_and_handles_nothing(stream):
    since = now()
    time.sleep(0.05)
    for i in range(6):
        put(i)
    stream["ddb"].delete_item(TableName="users", Key={"user_id": {"S": "u00000"}})
    seen: list = []
    summary = run_job(RewindOptions(consumer="search-indexer", since=since, dry_run=True), store=stream["store"],
                      handle_record=recorder(seen))
    assert seen == [] and summary["exit_code"] == 0 and summary["dry_run"]
    assert summary["taken"] == 7 and summary["by_event"] == {"INSERT": 6, "REMOVE": 1}


@pytest.fixture
def crm(stream, monkeypatch):
    """The fake CRM, and the table crm-sync keeps its applied change orders in."""
    import consumers.crm_sync as crm_sync
    from local.fakes import FakeCRM

    monkeypatch.setenv("IDEMPOTENCY_TABLE", create_idempotency_table())
    with FakeCRM(token="t") as fake:
        monkeypatch.setenv("CRM_BASE_URL", fake.url)
        monkeypatch.setenv("CRM_TOKEN", "t")
        crm_sync._client = None
        yield fake
        crm_sync._client = None


def test_a_rewind_re_applies_what_a_buggy_consumer_wrote_although_it_saw_those_changes(stream, crm, monkeypatch):
    """The articles' case: crm-sync ran the window's changes (its order guard recorded them)
    but a bug wrote wrong data without raising. The rewind in latest mode rebuilds each record
    from the item now, ordered as that read, so the guard lets it through and the CRM is right.
    (A read is ordered the allowance plus a second before it: no allowance here, moto runs on
    this machine's clock, and the changes are two seconds old when the rewind reads them.)"""
    monkeypatch.setenv("BACKFILL_CLOCK_SKEW_MS", "0")
    from consumers.crm_sync import handle_record
    from reprocess.stream_reader import to_lambda_record
    from streamkit import StreamRecord

    since = now()
    time.sleep(0.05)
    for i in range(5):
        put(i)
    for raw in stream_records(stream["arn"]):  # the stream path applied them...
        handle_record(StreamRecord(to_lambda_record(raw, stream["arn"])))
    for contact in crm.contacts.values():  # ...wrongly, without raising
        contact["properties"]["firstname"] = "WRONG"
    replayed = [StreamRecord(to_lambda_record(r, stream["arn"])) for r in stream_records(stream["arn"])]
    handle_record(replayed[0])  # the same change again is skipped by the guard: no repair that way
    assert crm.by_email(user_item(0)["email"])["properties"]["firstname"] == "WRONG"
    time.sleep(2.1)

    summary = run_job(RewindOptions(consumer="crm-sync", since=since), store=stream["store"])
    assert summary["status"] == "succeeded" and summary["handled"] == 5 and summary["source"]["mode"] == "latest"
    for i in range(5):
        assert crm.by_email(user_item(i)["email"])["properties"]["firstname"] == user_item(i)["firstname"]


def test_a_change_made_after_the_rewind_read_the_item_wins(stream, crm):
    """A rewound record is ordered as its read: the stream's next change of that user, applied
    before the rewound copy arrives, is not overwritten by it."""
    from consumers.crm_sync import handle_record
    from reprocess.stream_reader import to_lambda_record
    from streamkit import StreamRecord

    since = now()
    time.sleep(0.05)
    put(1)
    raced = []

    def racing(record) -> None:
        if not raced:  # the user renames herself after the rewind read her item
            put(1, firstname="Newer")
            raced.append(StreamRecord(to_lambda_record(stream_records(stream["arn"])[-1], stream["arn"])))
            handle_record(raced[0])  # crm-sync's stream path applies it first
        handle_record(record)

    summary = run_job(RewindOptions(consumer="crm-sync", since=since, until=now()), store=stream["store"],
                      handle_record=racing)
    assert summary["handled"] == 1 and raced
    assert crm.by_email(user_item(1)["email"])["properties"]["firstname"] == "Newer"


def test_latest_mode_rewinds_crm_sync_to_the_items_as_they_are_now(stream, crm):
    """crm-sync re-run over a window: each record rebuilt from the item now, so a contact gets
    today's name even though the window saw an older one, and a user deleted since is archived."""
    since = now()
    time.sleep(0.05)
    for i in range(4):
        put(i, firstname="Old")
    until = now()
    time.sleep(0.05)
    put(1, firstname="New")  # after the window
    stream["ddb"].delete_item(TableName="users", Key={"user_id": {"S": "u00002"}})
    crm.contacts["seed"] = {"id": "seed", "properties": {"email": user_item(2)["email"]}, "archived": False,
                            "createdAt": "", "updatedAt": ""}
    summary = run_job(RewindOptions(consumer="crm-sync", since=since, until=until), store=stream["store"])
    assert summary["status"] == "succeeded" and summary["source"]["mode"] == "latest" and summary["handled"] == 4
    assert crm.by_email(user_item(1)["email"])["properties"]["firstname"] == "New"
    assert crm.by_email(user_item(0)["email"])["properties"]["firstname"] == "Old"
    assert crm.by_email(user_item(2)["email"]) is None  # archived: the user is gone now
    assert crm.by_email(user_item(2)["email"], archived=True) is not None


def test_the_cli_rewind_of_crm_sync_since_ten_minutes_ago(stream, crm, tmp_path):
    for i in range(3):
        put(i)
    out = run_cli("rewind", "--consumer", "crm-sync", "--since", "10m", "--json", "--checkpoints",
                  str(tmp_path / "jobs"))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["handled"] == 3 and summary["kind"] == "rewind" and summary["status"] == "succeeded"
    assert len(crm.active()) == 3


def test_lineages_read_parents_before_children_and_split_roots_apart():
    shards = [
        {"ShardId": "c2", "ParentShardId": "p", "SequenceNumberRange": {"StartingSequenceNumber": "300"}},
        {"ShardId": "p", "ParentShardId": "gone", "SequenceNumberRange": {"StartingSequenceNumber": "100"}},
        {"ShardId": "c1", "ParentShardId": "p", "SequenceNumberRange": {"StartingSequenceNumber": "200"}},
        {"ShardId": "g", "ParentShardId": "c1", "SequenceNumberRange": {"StartingSequenceNumber": "400"}},
        {"ShardId": "q", "SequenceNumberRange": {"StartingSequenceNumber": "150"}},
    ]
    assert rewind.lineages(shards) == [["p", "c1", "c2", "g"], ["q"]]


@pytest.mark.parametrize("argv, message", [
    (["--since", "yesterday"], "since must be an ISO-8601 time"),
    (["--since", "2h", "--until", "3h"], "must be after since"),
    (["--since", "2h", "--window", "0"], "window must be an integer from 1 to 604800, got 0"),
    (["--since", "2h", "--mode", "sideways"], "mode must be one of replay, latest"),
    ([], "rewind needs --since"),
])
def test_bad_rewind_options_exit_2(stream, argv, message):
    out = run_cli("rewind", "--consumer", "crm-sync", *argv)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_latest_mode_reads_a_batch_of_items_in_bulk_and_asks_again_for_unprocessed_keys(stream):
    """BatchGetItem may leave keys unprocessed (moto never does: the answer is trimmed here, as
    DynamoDB trims it under load); they are asked for again, and gone items come back None."""
    from reprocess.latest import current_items, key_text

    for i in range(150):
        put(i)
    real = boto3.client("dynamodb")
    calls = []

    class Trimming:
        def batch_get_item(self, **kw):
            resp = real.batch_get_item(**kw)
            calls.append(len(kw["RequestItems"]["users"]["Keys"]))
            assert kw["RequestItems"]["users"]["ConsistentRead"] is True
            if len(calls) == 1:  # the first answer: half of it "unprocessed"
                items = resp["Responses"]["users"]
                keep, drop = items[: len(items) // 2], items[len(items) // 2:]
                resp["Responses"]["users"] = keep
                resp["UnprocessedKeys"] = {"users": {"Keys": [{"user_id": i["user_id"]} for i in drop],
                                                     "ConsistentRead": True}}
            return resp

    keys = [{"user_id": {"S": f"u{i:05d}"}} for i in range(150)] + [{"user_id": {"S": "gone"}}]
    found = current_items(Trimming(), "users", keys, sleep=lambda s: None)
    assert calls[:2] == [100, 51] and len(calls) == 3  # 100 + 51, then the 50 dropped ones again
    assert found[key_text({"user_id": {"S": "gone"}})] is None
    assert found[key_text({"user_id": {"S": "u00042"}})]["email"] == {"S": user_item(42)["email"]}
    assert sum(v is not None for v in found.values()) == 150


def test_on_a_terminal_the_cli_rewind_shows_a_progress_bar_of_windows(stream, crm, tmp_path):
    import re

    from .conftest import run_cli_on_a_terminal

    for i in range(3):
        put(i)
    code, out, shown = run_cli_on_a_terminal("rewind", "--consumer", "crm-sync", "--since", "10m", "--window", "2m",
                                             "--checkpoints", str(tmp_path / "jobs"))
    assert code == 0, shown[-3000:]
    last = shown.replace("\r\n", "\n").split("\r")[-1]  # the bar as it was left: every window done
    done = re.search(r"rewind crm-sync: 100%.* (\d+)/(\d+) .*window", last)
    assert done and done[1] == done[2] and int(done[1]) >= 5, last
    assert "handled=3" in last and "captured=0" in last, last
    assert len(crm.active()) == 3 and "rewind of crm-sync" in out


def test_a_configuration_error_stops_the_rewind_before_that_record_and_a_resume_runs_it(stream):
    """ConfigError from handle_record (a setting, not the record) is not captured: the job stops
    with exit 2 at that record, its checkpoint before it; the resume runs it and the rest, so
    every record is handled exactly once and the failure queue stays empty."""
    from streamkit import ConfigError

    since = now()
    time.sleep(0.05)
    for i in range(30):
        put(i)
    opts = RewindOptions(consumer="search-indexer", since=since, until=now(), mode="replay")
    handled: list = []

    def misconfigured_at_12(record) -> None:
        if len(handled) == 12:
            raise ConfigError("set CRM_TOKEN (local) or CRM_TOKEN_PARAM (the SSM SecureString name, in AWS)")
        handled.append(record.keys["user_id"])

    first = run_job(opts, store=stream["store"], handle_record=misconfigured_at_12, job_id="cfg")
    assert first["status"] == "failed" and first["exit_code"] == 2, first
    assert first["taken"] == first["handled"] == 12 and first["captured"] == 0
    assert "CRM_TOKEN_PARAM" in first["problems"][0] and "resume" in first["problems"][0]
    second = run_job(opts, store=stream["store"], handle_record=recorder(seen := []), resume="cfg")
    assert second["status"] == "succeeded" and second["exit_code"] == 0, second
    assert second["taken"] == second["handled"] == 30 and second["captured"] == 0
    assert handled + [r.keys["user_id"] for r in seen] == [f"u{i:05d}" for i in range(30)]  # each once, in order
    queue = boto3.client("sqs").get_queue_url(QueueName="userstream-dev-search-indexer-failures")["QueueUrl"]
    assert take_all(queue) == []
