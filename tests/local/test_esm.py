"""The event-source-mapping emulator's semantics, on a real moto stream (server mode)."""
from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from local.bridge import KinesisBridge
from local.esm import Emulator, MappingConfig
from local.functions import FunctionConfig, FunctionRuntime
from streamkit import StreamRecord, onfailure, sources
from tests.local import recorder
from tests.support.aws import create_queue, create_users_table, take_all
from tests.support.users import put_users as put_user_items
from tests.support.users import user_item


@pytest.fixture
def stream(aws):
    recorder.calls.clear()
    recorder.environ_seen.clear()
    recorder.remaining_ms.clear()
    recorder.hooks.clear()
    return create_users_table("users")


@pytest.fixture
def dlq(aws):
    return create_queue("esm-on-failure")


def put_users(n: int, start: int = 0) -> list[str]:
    """Users ``u000``.. into the users table; odd ones on the pro plan (for the filter tests)."""
    return put_user_items((user_item(i, width=3, plan="pro" if i % 2 else "free") for i in range(start, start + n)),
                       "users")


def function(name: str, **env) -> FunctionRuntime:
    return FunctionRuntime(FunctionConfig(name, "tests/local/fn_handlers.handler", {"FN_NAME": name, **env}, timeout_s=30))


def kinesis_stream() -> str:
    """The Kinesis stream the users table publishes to (Kinesis Data Streams for DynamoDB)."""
    kinesis = boto3.client("kinesis")
    names = kinesis.list_streams()["StreamNames"]
    if "users-changes" not in names:
        kinesis.create_stream(StreamName="users-changes", ShardCount=1)
    return kinesis.describe_stream_summary(StreamName="users-changes")["StreamDescriptionSummary"]["StreamARN"]


def emulator(stream_arn, *mappings: dict, functions: list[FunctionRuntime], clock=time.time, tmp_path=None,
             source: str = "dynamodb") -> Emulator:
    """Mappings on the table's DynamoDB stream, or (``source="kinesis"``) on its Kinesis stream,
    fed by the bridge as the table's KinesisStreamSpecification would on AWS."""
    bridges = []
    if source == "kinesis":
        stream_arn = kinesis_stream()
        bridges = [KinesisBridge.for_table("users", stream_arn)]
    configs = [MappingConfig(name=f"{m['function']}Mapping", stream_arn=stream_arn, source=source,
                             **{"starting_position": "TRIM_HORIZON", **m}) for m in mappings]
    return Emulator(configs, {f.config.name: f for f in functions}, clock=clock, retry_backoff_s=0, bridges=bridges,
                    state_path=(tmp_path / "esm.json") if tmp_path else None)


def calls_of(name: str) -> list[tuple[list[str], list[str]]]:
    return [(seqs, users) for n, seqs, users in recorder.calls if n == name]


def drain(url: str) -> list[dict]:
    """The on-failure records now in ``url`` (received and deleted)."""
    return [m["body"] for m in take_all(url)]


def test_records_arrive_in_lambda_format_in_batches(stream, tmp_path):
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName="users", Item={"user_id": {"S": "b1"}, "blob": {"B": b"\x00\x01"}, "n": {"N": "7"}})
    put_users(6)
    seen = []
    fn = function("fmt")
    fn_invoke = fn.invoke
    fn.invoke = lambda event: (seen.append(event), fn_invoke(event))[1]
    em = emulator(stream, {"function": "fmt", "batch_size": 3}, functions=[fn], tmp_path=tmp_path)
    report = em.run_until_idle()
    assert report.ok and report.caught_up == ["fmt"]
    assert [len(e["Records"]) for e in seen] == [3, 3, 1]
    first = seen[0]["Records"][0]
    assert first["eventSourceARN"] == stream and first["eventVersion"] == "1.1"
    assert first["eventSource"] == "aws:dynamodb"
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    rec = StreamRecord(first)
    assert rec.new_image == {"user_id": "b1", "blob": b"\x00\x01", "n": 7}
    json.dumps(seen)  # exactly JSON, as Lambda delivers
    seqs = [r["dynamodb"]["SequenceNumber"] for e in seen for r in e["Records"]]
    assert seqs == sorted(seqs, key=int) and len(set(seqs)) == 7
    state = json.loads((tmp_path / "esm.json").read_text())
    (m,) = state["mappings"]
    assert m["functionName"] == "fmt" and m["status"] == "caught-up" and m["iteratorAgeSeconds"] == 0
    assert m["settings"]["BatchSize"] == 3 and m["settings"]["StartingPosition"] == "TRIM_HORIZON"
    assert m["shards"][next(iter(m["shards"]))]["checkpointSequenceNumber"] == seqs[-1]
    assert m["counters"]["succeeded"] == 7


def test_latest_starts_after_existing_records(stream, source):
    put_users(3)
    em = emulator(stream, {"function": "late", "starting_position": "LATEST"}, functions=[function("late")],
                  source=source)
    put_users(2, start=3)
    em.run_until_idle()
    assert [u for _, users in calls_of("late") for u in users] == ["u003", "u004"]


def test_report_batch_item_failures_checkpoints_at_lowest_reported(stream, dlq, source):
    url, arn = dlq
    put_users(10)
    fn = function("partial", BEHAVIOUR="report-bad", BAD_USERS="u005,u003")
    em = emulator(stream, {"function": "partial", "batch_size": 10, "report_batch_item_failures": True,
                           "max_retry_attempts": 1, "on_failure_arn": arn}, functions=[fn], source=source)
    em.run_until_idle()
    calls = calls_of("partial")
    assert calls[0][1] == [f"u{i:03d}" for i in range(10)]
    # checkpoint at the lowest reported (u003): u000-u002 are never delivered again
    assert calls[1][1] == [f"u{i:03d}" for i in range(3, 10)]
    # retries exhausted on the remainder: it is discarded with metadata, nothing after it re-run
    assert len(calls) == 2
    (msg,) = drain(url)
    info = msg[onfailure.BATCH_INFO_KEYS[source]]  # DDBStreamBatchInfo / KinesisBatchInfo
    assert info["startSequenceNumber"] == calls[0][0][3] and info["endSequenceNumber"] == calls[0][0][9]
    assert info["streamArn"] == em.mapping("partial").config.stream_arn
    assert info["batchSize"] == 7 and msg["requestContext"]["approximateInvokeCount"] == 2
    c = em.mapping("partial").counters
    assert c.read == 10 == c.succeeded + c.discarded  # conservation: 3 handled + 7 discarded


def test_report_batch_item_failures_ignored_without_the_response_type(stream):
    put_users(4)
    em = emulator(stream, {"function": "noreport"}, functions=[function("noreport", BEHAVIOUR="report-bad", BAD_USERS="u001")])
    em.run_until_idle()
    assert len(calls_of("noreport")) == 1 and em.mapping("noreport").counters.succeeded == 4


def test_malformed_item_identifier_fails_the_whole_batch(stream):
    put_users(4)
    fn = function("malformed", BEHAVIOUR="bad-identifier", BAD_USERS="u002")
    em = emulator(stream, {"function": "malformed", "report_batch_item_failures": True}, functions=[fn])
    report = em.run_until_idle(stall_after=3)
    assert report.stalled == ["malformed"]
    calls = calls_of("malformed")
    assert len(calls) == 3 and all(users == ["u000", "u001", "u002", "u003"] for _, users in calls)
    assert "itemIdentifier" in em.mapping("malformed").last_error
    em.redeploy("malformed", {"BEHAVIOUR": "ok"})
    assert em.run_until_idle().ok and em.mapping("malformed").counters.succeeded == 4


def test_bisect_isolates_the_poison_record_and_retries_exhausted_send_metadata(stream, dlq, source):
    url, arn = dlq
    put_users(8)
    fn = function("bisect", BEHAVIOUR="raise-on-bad", BAD_USERS="u005")
    em = emulator(stream, {"function": "bisect", "batch_size": 8, "bisect_on_error": True,
                           "max_retry_attempts": 2, "on_failure_arn": arn}, functions=[fn], source=source)
    assert em.run_until_idle().ok
    batches = [users for _, users in calls_of("bisect")]
    assert batches[:5] == [[f"u{i:03d}" for i in range(8)], [f"u{i:03d}" for i in range(4)],
                           [f"u{i:03d}" for i in range(4, 8)], ["u004", "u005"], ["u004"]]
    # splitting down to the poison record does not count as retries: 1 try + 2 retries on it alone
    assert batches.count(["u005"]) == 3
    delivered_ok = {u for b in batches if "u005" not in b for u in b}
    assert delivered_ok == {f"u{i:03d}" for i in range(8)} - {"u005"}
    (msg,) = drain(url)
    key = onfailure.BATCH_INFO_KEYS[source]
    assert set(msg) == {"requestContext", "responseContext", "version", "timestamp", key}
    assert msg["version"] == "1.0" and msg["timestamp"].endswith("Z")
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["approximateInvokeCount"] == 3
    assert msg["requestContext"]["functionArn"].endswith(":function:bisect")
    assert msg["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    info = msg[key]
    seq5 = calls_of("bisect")[0][0][5]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == seq5
    assert info["batchSize"] == 1 and info["streamArn"] == em.mapping("bisect").config.stream_arn
    assert info["shardId"] in em.mapping("bisect").shards
    assert info["approximateArrivalOfFirstRecord"].endswith("Z") and len(info["approximateArrivalOfLastRecord"]) == 20
    parsed = onfailure.parse(msg)  # what the reprocess worker reads back
    assert parsed.batch.start_sequence_number == seq5 and parsed.function_name == "bisect"
    assert parsed.batch.source == source
    c = em.mapping("bisect").counters
    assert c.read == 8 and c.succeeded == 7 and c.discarded == 1


def test_retries_exhausted_without_bisect_discard_the_whole_batch(stream, dlq, source):
    url, arn = dlq
    put_users(5)
    fn = function("nobisect", BEHAVIOUR="raise-on-bad", BAD_USERS="u001")
    em = emulator(stream, {"function": "nobisect", "batch_size": 3, "max_retry_attempts": 1, "on_failure_arn": arn},
                  functions=[fn], source=source)
    assert em.run_until_idle().ok
    batches = [users for _, users in calls_of("nobisect")]
    assert batches == [["u000", "u001", "u002"]] * 2 + [["u003", "u004"]]
    (msg,) = drain(url)
    info = msg[onfailure.BATCH_INFO_KEYS[source]]
    assert info["batchSize"] == 3 and msg["requestContext"]["approximateInvokeCount"] == 2


def test_records_older_than_maximum_record_age_are_discarded_with_metadata(stream, dlq, source):
    url, arn = dlq
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    put_users(3)
    fn = function("aging", BEHAVIOUR="raise-on-bad", BAD_USERS="u000")
    em = emulator(stream, {"function": "aging", "max_record_age_s": 60, "on_failure_arn": arn},
                  functions=[fn], clock=clock, source=source)
    assert em.run_until_idle(stall_after=2).stalled == ["aging"]
    assert em.iterator_ages()["aging"] < 60
    offset[0] = 120  # two minutes later: every pending record is past its maximum age
    assert em.mapping("aging").iterator_age_s() >= 120
    invocations = len(calls_of("aging"))
    assert em.run_until_idle().ok
    assert len(calls_of("aging")) == invocations  # expired records are never delivered again
    offset[0] = 0
    put_users(1, start=3)
    assert em.run_until_idle().ok
    assert calls_of("aging")[-1][1] == ["u003"]
    (msg,) = drain(url)
    assert msg["requestContext"]["condition"] == "RecordAgeExceeded"
    assert msg[onfailure.BATCH_INFO_KEYS[source]]["batchSize"] == 3
    assert "functionError" not in msg["responseContext"]
    c = em.mapping("aging").counters
    assert c.read == 4 == c.succeeded + c.discarded


def test_filter_criteria_drop_and_checkpoint_non_matching_records(stream):
    put_users(6)
    boto3.client("dynamodb").delete_item(TableName="users", Key={"user_id": {"S": "u001"}})
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"plan": {"S": [{"prefix": "pr"}]}}}}
    em = emulator(stream, {"function": "filtered", "filter_criteria": {"Filters": [{"Pattern": json.dumps(pattern)}]}},
                  functions=[function("filtered")])
    assert em.run_until_idle().ok
    assert [u for _, users in calls_of("filtered") for u in users] == ["u001", "u003", "u005"]
    m = em.mapping("filtered")
    assert m.counters.read == 7 and m.counters.filtered == 4 and m.counters.succeeded == 3
    (shard,) = m.shards.values()
    assert shard.checkpoint_seq == shard.last_read_seq  # the trailing REMOVE (filtered) is checkpointed


def test_a_blocked_mapping_does_not_hold_the_others_back(stream, source):
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    put_users(5)
    blocked = function("blocked", BEHAVIOUR="raise-on-bad", BAD_USERS="u002")
    healthy = function("healthy")
    em = emulator(stream, {"function": "blocked", "batch_size": 2}, {"function": "healthy", "batch_size": 2},
                  functions=[blocked, healthy], clock=clock, source=source)
    report = em.run_until_idle(stall_after=3)
    assert report.stalled == ["blocked"] and report.caught_up == ["healthy"]
    assert sorted(u for _, users in calls_of("healthy") for u in users) == [f"u{i:03d}" for i in range(5)]
    offset[0] = 30
    ages = em.iterator_ages()
    assert ages["healthy"] == 0 and ages["blocked"] >= 30
    state = em.state()["mappings"]
    assert state[0]["status"] == "retrying" and "cannot handle u002" in state[0]["lastError"]
    (shard,) = state[0]["shards"].values()
    assert shard["pendingRecords"] == 3 and shard["attempts"] >= 3
    # blocked: every record before the failing one is checkpointed, nothing after it delivered yet
    assert {u for _, users in calls_of("blocked") for u in users} == {"u000", "u001", "u002", "u003"}
    em.redeploy("blocked", {"BAD_USERS": ""})
    assert em.run_until_idle().ok
    assert calls_of("blocked")[-2:] == [calls_of("blocked")[-2], calls_of("blocked")[-1]]
    assert em.mapping("blocked").counters.succeeded == 5 and em.iterator_ages()["blocked"] == 0


def test_each_function_sees_only_its_own_environment(stream, monkeypatch):
    monkeypatch.delenv("SHARED_VAR", raising=False)
    put_users(2)
    a, b = function("env-a", SHARED_VAR="a"), function("env-b", SHARED_VAR="b")
    em = emulator(stream, {"function": "env-a"}, {"function": "env-b"}, functions=[a, b])
    assert em.run_until_idle().ok
    assert sorted(recorder.environ_seen) == [("env-a", "a"), ("env-b", "b")]
    assert "SHARED_VAR" not in os.environ and "FN_NAME" not in os.environ


def test_redeploy_is_a_cold_start_with_the_new_environment(stream):
    fn = function("cold")
    em = emulator(stream, {"function": "cold"}, functions=[fn])
    put_users(1)
    em.run_until_idle()
    assert fn.generation == 1
    em.redeploy("cold", {"EXTRA": "1"})
    put_users(1, start=1)
    em.run_until_idle()
    assert fn.generation == 2 and fn.config.environment["EXTRA"] == "1"


def test_a_handler_that_cannot_be_imported_fails_the_batch_and_blocks(stream):
    bad = FunctionRuntime(FunctionConfig("broken", "tests/local/no_such_module.handler", {}))
    em = Emulator([MappingConfig("m", "broken", stream, starting_position="TRIM_HORIZON")], {"broken": bad},
                  retry_backoff_s=0)
    put_users(1)
    assert em.run_until_idle(stall_after=2).stalled == ["broken"]
    assert "no_such_module" in em.mapping("broken").last_error


def test_batching_window_waits_for_a_full_batch_or_the_window(stream):
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    em = emulator(stream, {"function": "window", "batch_size": 5, "max_batching_window_s": 10},
                  functions=[function("window")], clock=clock)
    put_users(3)
    em.step()
    em.step()
    assert calls_of("window") == []  # 3 of 5 records, window still open
    offset[0] = 11
    em.step()
    assert [users for _, users in calls_of("window")] == [["u000", "u001", "u002"]]
    put_users(6, start=3)
    em.step()  # a full batch goes at once
    assert [users for _, users in calls_of("window")][-1] == ["u003", "u004", "u005", "u006", "u007"]


def test_the_context_deadline_is_the_function_timeout_and_overruns_fail_the_batch(stream):
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    fn = function("slow")
    fn.config.timeout_s = 3
    em = emulator(stream, {"function": "slow"}, functions=[fn], clock=clock)
    put_users(2)
    slow_once = [True]

    def overrun(name, event):
        if slow_once[0]:
            slow_once[0] = False
            offset[0] += 5  # this invocation "took" 5 s of a 3 s timeout

    recorder.hooks.append(overrun)
    assert em.run_until_idle().ok
    assert 0 < recorder.remaining_ms[0] <= 3000
    assert [users for _, users in calls_of("slow")] == [["u000", "u001"]] * 2  # timed out, retried whole
    assert em.mapping("slow").counters.failed_invocations == 1


# --- Kinesis Data Streams for DynamoDB ------------------------------------------------------
def test_kinesis_records_arrive_in_lambdas_kinesis_format_in_batches(stream, tmp_path):
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName="users", Item={"user_id": {"S": "b1"}, "blob": {"B": b"\x00\x01"}, "n": {"N": "7"}})
    put_users(6)
    seen = []
    fn = function("fmt")
    fn_invoke = fn.invoke
    fn.invoke = lambda event: (seen.append(event), fn_invoke(event))[1]
    em = emulator(stream, {"function": "fmt", "batch_size": 3}, functions=[fn], tmp_path=tmp_path, source="kinesis")
    assert em.run_until_idle().ok
    assert [len(e["Records"]) for e in seen] == [3, 3, 1]
    first = seen[0]["Records"][0]
    kinesis_arn = em.mapping("fmt").config.stream_arn
    assert first["eventSource"] == "aws:kinesis" and first["eventSourceARN"] == kinesis_arn
    assert first["eventID"] == f"shardId-000000000000:{first['kinesis']['sequenceNumber']}"
    change = sources.decode_data(first["kinesis"]["data"])  # the Kinesis-for-DynamoDB change record
    assert (change["eventName"], change["tableName"], change["recordFormat"]) == ("INSERT", "users", "application/json")
    assert change["dynamodb"]["ApproximateCreationDateTime"] > 10**15  # MICROSECOND precision
    rec = StreamRecord(first)
    assert rec.new_image == {"user_id": "b1", "blob": b"\x00\x01", "n": 7} and rec.source == "kinesis"
    json.dumps(seen)  # exactly JSON, as Lambda delivers
    records = [StreamRecord(r) for e in seen for r in e["Records"]]
    assert [r.sequence_number for r in records] == sorted((r.sequence_number for r in records), key=int)
    assert [r.change_order for r in records] == sorted(r.change_order for r in records)  # one writer: in order
    (m,) = json.loads((tmp_path / "esm.json").read_text())["mappings"]
    assert m["source"] == "kinesis" and m["streamArn"] == kinesis_arn and m["counters"]["succeeded"] == 7


def test_kinesis_filter_matches_the_decoded_data(stream):
    put_users(4)
    boto3.client("dynamodb").delete_item(TableName="users", Key={"user_id": {"S": "u001"}})
    pattern = {"data": {"eventName": ["REMOVE"]}}  # Lambda filters a Kinesis record on its JSON data
    em = emulator(stream, {"function": "filtered", "filter_criteria": {"Filters": [{"Pattern": json.dumps(pattern)}]}},
                  functions=[function("filtered")], source="kinesis")
    assert em.run_until_idle().ok
    assert [u for _, users in calls_of("filtered") for u in users] == ["u001"]
    assert em.mapping("filtered").counters.filtered == 4


def test_a_kinesis_on_failure_range_is_what_the_worker_reads_back(stream, dlq):
    """The KinesisBatchInfo the emulator sends names exactly the records it discarded, and the
    reprocess worker's reader finds them in the stream."""
    from reprocess import backstop

    url, arn = dlq
    put_users(6)
    fn = function("kfail", BEHAVIOUR="raise-on-bad", BAD_USERS="u002")
    em = emulator(stream, {"function": "kfail", "batch_size": 3, "max_retry_attempts": 0, "on_failure_arn": arn},
                  functions=[fn], source="kinesis")
    assert em.run_until_idle().ok
    (msg,) = drain(url)
    parsed = onfailure.parse(msg)
    res = backstop.resolve(parsed, boto3.client("kinesis"))
    assert [sources.keys_of(r)["user_id"]["S"] for r in res.records] == ["u000", "u001", "u002"]
    assert res.missing == 0 and not res.expired


@pytest.mark.parametrize("source", ["dynamodb", "kinesis"])
def test_an_s3_destination_gets_the_whole_failed_invocation_records_included(stream, source):
    """What Lambda writes to an S3 on-failure destination (hard-fail consumers): the metadata
    plus the invocation's records, at aws/lambda/<mapping UUID>/<shard>/YYYY/MM/DD/<time>-<uuid>,
    on either source (DDBStreamBatchInfo or KinesisBatchInfo; the records in that source's format)."""
    import re

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="userstream-dev-crm-sync-failed")
    put_users(3)
    fn = function("keeps", BEHAVIOUR="raise-on-bad", BAD_USERS="u001")
    em = emulator(stream, {"function": "keeps", "batch_size": 3, "max_retry_attempts": 1,
                           "on_failure_arn": "arn:aws:s3:::userstream-dev-crm-sync-failed"}, functions=[fn], source=source)
    em.run_until_idle()
    (obj,) = s3.list_objects_v2(Bucket="userstream-dev-crm-sync-failed")["Contents"]
    mapping = em.mapping("keeps")
    shard = next(iter(mapping.shards))
    layout = rf"aws/lambda/{mapping.uuid}/{shard}/\d{{4}}/\d\d/\d\d/\d{{4}}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{{36}}"
    assert re.fullmatch(layout, obj["Key"]), obj["Key"]
    body = json.loads(s3.get_object(Bucket="userstream-dev-crm-sync-failed", Key=obj["Key"])["Body"].read())
    assert isinstance(body["payload"], str)  # the invocation event, as a JSON string
    msg = onfailure.parse(body)
    assert msg.condition == "RetryAttemptsExhausted" and msg.batch.batch_size == 3 and msg.batch.source == source
    assert [sources.keys_of(r)["user_id"]["S"] for r in msg.records] == ["u000", "u001", "u002"]
    assert mapping.counters.read == 3 == mapping.counters.discarded  # nothing lost: all three are in the object
