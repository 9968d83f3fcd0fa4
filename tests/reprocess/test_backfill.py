"""Backfill: a parallel Scan of the users table through search-indexer's handle_record, into the
SQLite index, on moto: index == table, resumable after a kill, rate-limited, failures captured."""
from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from reprocess.checkpoints import FileStore, manifest_key, part_key
from reprocess.job import Job
from reprocess.jobrun import run_job
from reprocess.options import BackfillOptions, OptionsError
from tests.support.aws import create_consumer_queues, create_users_table, queue_count, take_all

from .conftest import run_cli
from .jobsupport import FIRST, CallLog, index_docs, index_matches_table, load_table, user_item


@pytest.fixture
def search(env, monkeypatch, tmp_path):
    """search-indexer's real sink (SQLite FTS5 in a temp file), its failure queues, a users table."""
    import consumers.search_indexer as si

    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    monkeypatch.setenv("SEARCH_URL", url)
    monkeypatch.delenv("SEARCH_INDEX", raising=False)
    monkeypatch.delenv("USER_SCHEMA_MODE", raising=False)
    create_users_table("users", stream=False)
    monkeypatch.setenv("USERS_TABLE", "users")
    si._sinks.clear()
    failures, parking = create_consumer_queues("search-indexer")
    yield {"url": url, "table": "users", "failures": failures, "parking": parking, "store": FileStore(tmp_path / "jobs")}
    si._sinks.clear()


def counting(calls: list):
    from consumers.search_indexer import handle_record

    lock = threading.Lock()

    def handle(record) -> None:
        with lock:
            calls.append(record.keys["user_id"])
        handle_record(record)

    return handle


def test_backfill_of_10000_items_leaves_index_equal_to_table(search):
    """10,000 items (three attributes each: moto's Scan serializes ~0.5 ms per attribute value)."""
    from consumers.search_indexer import build_document

    items = [{"user_id": f"u{i:05d}", "fullname": f"{FIRST[i % 8]} Number{i}", "email": f"user{i}@example.com"}
             for i in range(10_000)]
    load_table("users", items)
    calls: list[str] = []
    summary = run_job(BackfillOptions(consumer="search-indexer", segments=4), store=search["store"],
                      handle_record=counting(calls))
    assert summary["exit_code"] == 0 and summary["status"] == "succeeded", summary
    docs = index_docs(search["url"])  # index == table: what was loaded is what the table holds
    assert {k: {f: d.get(f) for f in ("user_id", "name", "email")} for k, d in docs.items()} == {
        it["user_id"]: build_document(it) for it in items}
    assert len(calls) == len(set(calls)) == 10_000  # each item once
    assert summary["taken"] == summary["handled"] == summary["read"] == 10_000 and summary["captured"] == 0
    assert summary["part_status"] == {"done": 4}
    assert queue_count(search["failures"]) == 0
    stored = search["store"].get(f"jobs/{summary['job_id']}.json")  # where the operator API reads jobs
    assert stored["status"] == "succeeded" and stored["handled"] == 10_000


def test_a_backfill_killed_half_way_and_resumed_ends_in_the_same_state(search, tmp_path):
    """A real kill (SIGKILL from inside handle_record, mid-page, on 4 threads): the resume runs
    exactly the items no checkpoint covers, so items handled twice are only those of the
    pages in flight when it died (at most one page per segment)."""
    load_table("users", [user_item(i) for i in range(1_000)])
    log = CallLog(str(tmp_path / "calls.log"))
    common = ["backfill", "--consumer", "search-indexer", "--segments", "4", "--page-size", "50",
              "--checkpoints", str(tmp_path / "jobs"), "--handler", "tests.reprocess.job_handlers:counted_search",
              "--json", "--no-progress"]
    first = run_cli(*common, "--job-id", "killed-job", extra_env={"CALL_LOG": log.path, "KILL_AT": "430"})
    assert first.returncode == -9, first.stderr[-2000:]
    before = log.lines()
    assert len(before) == 430
    job = Job.load(search["store"], "killed-job")
    checkpointed = sum(s.counts.taken for s in job.states())
    assert 0 < checkpointed < 430  # the kill came after some checkpoints, inside some pages
    assert {s.status for s in job.states()} <= {"running", "done"}  # it never got to say goodbye

    second = run_cli(*common, "--resume", "killed-job", extra_env={"CALL_LOG": log.path})
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout)
    assert summary["status"] == "succeeded" and summary["handled"] == summary["taken"] == 1_000
    assert index_matches_table(search["url"], "users") == []
    after = log.lines()[len(before):]
    assert len(after) == 1_000 - checkpointed  # exactly what no checkpoint covered
    handled_first = len(before) - 1  # the last call was killed before it handled anything
    twice = handled_first - checkpointed
    assert len(before) + len(after) - 1 == 1_000 + twice
    assert twice <= 4 * 50  # at most one page per segment in flight
    assert {line.split()[0] for line in before[:-1] + after} == {f"u{i:05d}" for i in range(1_000)}


def test_a_stopped_backfill_resumes_without_handling_anything_twice(search):
    """Stopped politely (Ctrl-C, SIGTERM, the deadline): the parts checkpoint at the exact item."""
    load_table("users", [user_item(i) for i in range(300)])
    stop = threading.Event()
    calls: list[str] = []
    real = counting(calls)

    def stop_after_100(record) -> None:
        real(record)
        if len(calls) >= 100:
            stop.set()

    opts = BackfillOptions(consumer="search-indexer", segments=3, page_size=40)
    first = run_job(opts, store=search["store"], handle_record=stop_after_100, stop=stop, job_id="stopped")
    assert first["status"] == "paused" and first["exit_code"] == 1 and first["stopped_by"] == "interrupted"
    assert first["handled"] == len(calls)  # every call so far is covered by a checkpoint
    second = run_job(opts, store=search["store"], handle_record=counting(calls), resume="stopped")
    assert second["status"] == "succeeded" and second["handled"] == 300
    assert sorted(calls) == sorted({c for c in calls}) and len(calls) == 300
    assert index_matches_table(search["url"], "users") == []


def test_stream_writes_during_a_backfill_leave_the_newest_state(search):
    """A change made after the Scan read an item reaches the index through the stream path
    while the backfill still holds the older copy: the older copy must not overwrite it."""
    from consumers.search_indexer import handle_record
    from reprocess.stream_reader import to_lambda_record

    boto3.client("dynamodb").delete_table(TableName="users")
    create_users_table("users", stream=True)
    load_table("users", [user_item(i) for i in range(60)])
    streams = boto3.client("dynamodbstreams")
    arn = boto3.client("dynamodb").describe_table(TableName="users")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    changed: dict[str, str] = {}

    def racing(record) -> None:
        uid = record.keys["user_id"]
        if int(uid[1:]) % 10 == 0 and uid not in changed:
            # the user renames herself after the page was read; the stream consumer applies it first
            boto3.client("dynamodb").update_item(
                TableName="users", Key={"user_id": {"S": uid}}, UpdateExpression="SET firstname = :f",
                ExpressionAttributeValues={":f": {"S": "Renamed"}})
            changed[uid] = "Renamed"
            it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
            recs = streams.get_records(ShardIterator=it["ShardIterator"], Limit=1000)["Records"]
            latest = [r for r in recs if r["dynamodb"]["Keys"]["user_id"]["S"] == uid][-1]
            from streamkit import StreamRecord

            handle_record(StreamRecord(to_lambda_record(latest, arn)))
        handle_record(record)  # the backfill's copy, read before the change

    summary = run_job(BackfillOptions(consumer="search-indexer", segments=2), store=search["store"],
                      handle_record=racing)
    assert summary["status"] == "succeeded"
    assert len(changed) == 6
    docs = index_docs(search["url"])
    for uid in changed:
        assert docs[uid]["name"].startswith("Renamed"), docs[uid]
    assert index_matches_table(search["url"], "users") == []


def test_a_backfill_repairs_state_a_change_wrote_before_the_read(search):
    """The index holds a document written from an old change with wrong content (the
    mis-mapped index): the backfilled copy orders above it and replaces it."""
    from consumers.search_indexer import handle_record
    from streamkit import StreamRecord
    from streamkit.testing import make_record

    load_table("users", [user_item(i) for i in range(5)])
    wrong = {**user_item(3), "firstname": "Mismapped"}
    handle_record(StreamRecord(make_record("MODIFY", keys={"user_id": "u00003"}, new_image=wrong,
                                           created=int(time.time()) - 3600)))
    assert index_docs(search["url"])["u00003"]["name"].startswith("Mismapped")
    summary = run_job(BackfillOptions(consumer="search-indexer"), store=search["store"])
    assert summary["status"] == "succeeded"
    assert index_matches_table(search["url"], "users") == []


def test_a_backfilled_copy_orders_below_every_change_made_after_its_read_and_above_older_ones():
    """On both sources: a DynamoDB-Streams change (whole seconds, then its sequence number)
    and a Kinesis change (microseconds) made at or after the read time minus the allowance."""
    from reprocess.backfill import backfill_record
    from streamkit import StreamRecord
    from streamkit.ordering import dynamodb_order, kinesis_order

    read_at = 1_764_430_000.0  # a whole second: the hardest case for flooring
    skew = 5.0
    copy = StreamRecord(backfill_record({"user_id": {"S": "u1"}}, ["user_id"], read_at=read_at, job_id="j",
                                        source={}, clock_skew_s=skew)).change_order
    for after in (read_at - skew, read_at - skew + 0.5, read_at, read_at + 1):
        assert dynamodb_order(int(after), "100000000000000000001") > copy
        assert kinesis_order(int(after * 1_000_000)) > copy
    before = read_at - skew - 2
    assert dynamodb_order(int(before), "999999999999999999999") < copy  # an older change loses to it


def test_failures_are_captured_to_the_failure_queue_with_attempts_never_dropped(search, monkeypatch):
    """The v1 code (legacy schema) fails on v2 items: captured as envelopes (attempts 1, the
    backfilled record inside), the rest indexed; in = handled + captured; exit 1."""
    load_table("users", [user_item(i, v2=(i % 4 == 0)) for i in range(200)])
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    summary = run_job(BackfillOptions(consumer="search-indexer", segments=2), store=search["store"])
    assert summary["exit_code"] == 1 and summary["status"] == "finished-with-failures"
    assert summary["taken"] == 200 == summary["handled"] + summary["captured"]
    assert summary["captured"] == 50 and summary["by_error_type"] == {"KeyError": 50}
    messages = take_all(search["failures"])
    assert len(messages) == 50
    for m in messages:
        body = m["body"]
        assert body["attempts"] == 1 and body["error"]["type"] == "KeyError"
        assert body["record"]["eventName"] == "MODIFY" and "firstname" in json.dumps(body["record"]["dynamodb"]["NewImage"])
        assert m["attributes"]["consumer"] == "search-indexer"
    assert len(index_docs(search["url"])) == 150


def test_a_refused_capture_stops_the_segment_before_it_and_the_resume_loses_nothing(search):
    """SQS refuses the capture (throttled past the client's retries): the segment stops with
    its checkpoint before the failed item; once SQS answers, the resume captures it."""
    load_table("users", [user_item(i, v2=(i == 7)) for i in range(30)])
    session = boto3._get_default_session()

    def throttle(request, **kwargs):
        from botocore.awsrequest import AWSResponse

        body = b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}'
        return AWSResponse(request.url, 400, {"x-amzn-query-error": "RequestThrottled;Sender"}, _Raw(body))

    import os

    os.environ["USER_SCHEMA_MODE"] = "legacy"
    session.events.register("before-send.sqs.SendMessageBatch", throttle)
    try:
        first = run_job(BackfillOptions(consumer="search-indexer", page_size=10), store=search["store"],
                        job_id="refused")
    finally:
        session.events.unregister("before-send.sqs.SendMessageBatch", throttle)
    assert first["status"] == "failed" and first["exit_code"] == 1
    assert "capture refused" in first["problems"][0]
    assert first["captured"] == 0 and first["handled"] == first["taken"] < 30
    assert queue_count(search["failures"]) == 0
    second = run_job(BackfillOptions(consumer="search-indexer", page_size=10), store=search["store"],
                     resume="refused")
    del os.environ["USER_SCHEMA_MODE"]
    assert second["status"] == "finished-with-failures"
    assert second["taken"] == 30 and second["handled"] == 29 and second["captured"] == 1
    [message] = take_all(search["failures"])
    assert message["body"]["record"]["dynamodb"]["Keys"] == {"user_id": {"S": "u00007"}}


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


def test_the_rate_limit_holds_consumed_capacity_to_the_rate(search):
    """moto charges 1 RCU per Scan page: ~31 pages at 10 RCU/s with a burst of 10 need ~2 s
    (each page waits for a positive balance, so all but the last page's cost fit in
    burst + rate x elapsed)."""
    load_table("users", [user_item(i) for i in range(300)])
    started = time.monotonic()
    summary = run_job(BackfillOptions(consumer="search-indexer", rate=10, page_size=10), store=search["store"])
    elapsed = time.monotonic() - started
    assert summary["status"] == "succeeded" and summary["pages"] == 30
    assert summary["consumed_rcu"] == pytest.approx(31, abs=1)  # + the last, empty page
    assert elapsed >= (summary["consumed_rcu"] - 1 - 10) / 10


def test_a_dry_run_plans_and_scans_nothing(search):
    load_table("users", [user_item(i) for i in range(20)])
    summary = run_job(BackfillOptions(consumer="search-indexer", segments=2, rate=5, dry_run=True),
                      store=search["store"])
    assert summary["status"] == "planned" and summary["exit_code"] == 0
    assert summary["source"]["segments"] == 2 and "readCapacityUnits" in summary["estimate"]
    assert index_docs_or_empty(search["url"]) == {}


def index_docs_or_empty(url: str) -> dict:
    try:
        return index_docs(url)
    except Exception:
        return {}


@pytest.mark.parametrize("argv, message", [
    (["--segments", "0"], "segments must be an integer from 1 to 1000, got 0"),
    (["--segments", "1001"], "segments must be an integer from 1 to 1000, got 1001"),
    (["--rate", "0"], "rate must be a number of read capacity units per second above 0"),
    (["--page-size", "0"], "pageSize must be an integer from 1 to 10000, got 0"),
])
def test_bad_options_are_refused_with_exit_2(search, argv, message):
    out = run_cli("backfill", "--consumer", "search-indexer", *argv)
    assert out.returncode == 2 and message in out.stderr
    with pytest.raises(OptionsError, match=message.split(",")[0]):
        BackfillOptions.from_wire({"consumer": "search-indexer",
                                   {"--segments": "segments", "--rate": "rate", "--page-size": "pageSize"}[argv[0]]:
                                   float(argv[1]) if argv[0] == "--rate" else int(argv[1])})


def test_the_cli_backfill_rebuilds_a_lost_index(search, tmp_path):
    load_table("users", [user_item(i) for i in range(120)])
    out = run_cli("backfill", "--consumer", "search-indexer", "--segments", "3", "--json",
                  "--checkpoints", str(tmp_path / "jobs"))
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert summary["handled"] == 120 and summary["part_status"] == {"done": 3}
    assert f"resume with --resume {summary['job_id']}" in out.stderr
    assert index_matches_table(search["url"], "users") == []
    manifest = FileStore(tmp_path / "jobs").get(manifest_key(summary["job_id"]))
    assert manifest["kind"] == "backfill" and manifest["parts"] == ["0", "1", "2"]
    assert FileStore(tmp_path / "jobs").get(part_key(summary["job_id"], "2"))["status"] == "done"


def test_on_a_terminal_the_cli_backfill_shows_a_progress_bar_of_items(search, tmp_path):
    from .conftest import run_cli_on_a_terminal

    load_table("users", [user_item(i) for i in range(60)])
    code, out, shown = run_cli_on_a_terminal("backfill", "--consumer", "search-indexer", "--segments", "2",
                                             "--checkpoints", str(tmp_path / "jobs"))
    assert code == 0, shown[-3000:]
    last = shown.replace("\r\n", "\n").split("\r")[-1]  # the bar as it was left
    assert "backfill search-indexer" in shown and "60/60" in shown and "item" in shown, shown[-2000:]
    assert "handled=60" in last and "captured=0" in last, last
    assert "handled" in out  # the summary on stdout, not mixed into the bar
    code, _, shown = run_cli_on_a_terminal("backfill", "--consumer", "search-indexer", "--no-progress",
                                           "--checkpoints", str(tmp_path / "jobs"))
    assert code == 0 and "backfill search-indexer" not in shown and "60/60" not in shown


def test_a_configuration_error_stops_the_backfill_with_exit_2_and_a_resume_finishes_it(search, tmp_path):
    """search-indexer's handle_record raises ConfigError on a SEARCH_URL it cannot use: that is
    no record's failure, so nothing is captured; the job stops (every part) with exit 2 and the
    message naming the setting, and after the fix a resume of the same job indexes everything."""
    load_table("users", [user_item(i) for i in range(60)])
    common = ["backfill", "--consumer", "search-indexer", "--segments", "2", "--json",
              "--checkpoints", str(tmp_path / "jobs")]
    first = run_cli(*common, "--job-id", "bad-config", extra_env={"SEARCH_URL": "ftp://index.example"})
    assert first.returncode == 2, first.stderr[-2000:]
    assert "reprocess: error:" in first.stderr and "SEARCH_URL='ftp://index.example'" in first.stderr
    assert "resume" in first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "failed" and summary["exit_code"] == 2
    assert summary["captured"] == 0 and summary["handled"] == 0
    assert queue_count(search["failures"]) == 0  # not 60 captures of one configuration error
    second = run_cli(*common, "--resume", "bad-config")
    assert second.returncode == 0, second.stderr[-2000:]
    resumed = json.loads(second.stdout)
    assert resumed["status"] == "succeeded" and resumed["handled"] == resumed["taken"] == 60
    assert index_matches_table(search["url"], "users") == []
    assert queue_count(search["failures"]) == 0
