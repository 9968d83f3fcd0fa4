"""Kinesis Data Streams for DynamoDB delivers a change twice, or an older change of an item
after a newer one: end to end (table -> local bridge -> Kinesis -> mapping emulator -> the
real search-indexer and crm-sync handlers), the index and the CRM still end at the table's
state. The bridge injects both faults (``duplicate_every``, ``late_every``)."""
from __future__ import annotations

import boto3

import consumers.crm_sync as cs
import consumers.search_indexer as si
from local.bridge import KinesisBridge
from local.esm import Emulator, MappingConfig
from local.functions import FunctionConfig, FunctionRuntime
from reprocess.kinesis_reader import to_lambda_record
from streamkit import StreamRecord
from tests.support.aws import create_consumer_queues, create_users_table, queue_count
from tests.support.users import user_item

USERS = range(6)


def write_changes() -> dict[str, dict | None]:
    """Three generations of every user, two deletions and a re-signup; returns the table's
    final state per user id (``None``: deleted)."""
    table = boto3.resource("dynamodb").Table("users")
    for i in USERS:
        table.put_item(Item=user_item(i, plan="free"))
    for i in USERS:
        table.put_item(Item=user_item(i, first="Bea", plan="pro"))
    for i in USERS:
        table.put_item(Item=user_item(i, first="Cy", plan="team"))
    table.delete_item(Key={"user_id": user_item(1)["user_id"]})
    table.delete_item(Key={"user_id": user_item(4)["user_id"]})
    table.put_item(Item=user_item(4, first="Dee", plan="pro"))  # signs up again
    live = {item["user_id"]: item for item in table.scan(ConsistentRead=True)["Items"]}
    return {user_item(i)["user_id"]: live.get(user_item(i)["user_id"]) for i in USERS}


def delivered_orders(stream_arn: str) -> dict[str, list[str]]:
    """Per user, the change_order of every Kinesis record in the order the stream holds them."""
    kinesis = boto3.client("kinesis")
    out: dict[str, list[str]] = {}
    for shard in kinesis.list_shards(StreamARN=stream_arn)["Shards"]:
        it = kinesis.get_shard_iterator(StreamARN=stream_arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for raw in kinesis.get_records(ShardIterator=it, StreamARN=stream_arn, Limit=10_000)["Records"]:
            view = StreamRecord(to_lambda_record(raw, stream_arn, shard["ShardId"]))
            out.setdefault(view.keys["user_id"], []).append(view.change_order)
    return out


def test_duplicates_and_late_changes_leave_the_index_and_the_crm_at_the_tables_state(aws, crm, tmp_path, monkeypatch):
    create_users_table("users")
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="users-changes", ShardCount=2)
    stream_arn = kinesis.describe_stream_summary(StreamName="users-changes")["StreamDescriptionSummary"]["StreamARN"]
    failures, parking = create_consumer_queues("search-indexer")
    search_url = f"sqlite:///{tmp_path}/search.sqlite3"
    functions = [
        FunctionRuntime(FunctionConfig("search-indexer", "handlers/search_indexer.handler", {
            "FAILURE_POLICY": "dlq-capture", "FAILURE_QUEUE_URL": failures, "SEARCH_URL": search_url},
            timeout_s=60)),  # serverless.yml's (the loop keeps a margin for the sink's slowest call)
        FunctionRuntime(FunctionConfig("crm-sync", "handlers/crm_sync.handler", {
            "FAILURE_POLICY": "hard-fail", "CRM_BASE_URL": crm.url, "CRM_TOKEN": "test-token",
            "IDEMPOTENCY_TABLE": "idempotency"}, timeout_s=60)),
    ]
    mappings = [MappingConfig(name=f"{f.config.name}-mapping", function=f.config.name, stream_arn=stream_arn,
                              source="kinesis", starting_position="TRIM_HORIZON", batch_size=4,
                              report_batch_item_failures=True, bisect_on_error=f.config.name == "crm-sync")
                for f in functions]
    bridge = KinesisBridge.for_table("users", stream_arn, duplicate_every=3, late_every=4)
    emulator = Emulator(mappings, {f.config.name: f for f in functions}, retry_backoff_s=0, bridges=[bridge])

    final = write_changes()
    report = emulator.run_until_idle()

    # The stream really held what Kinesis may deliver: copies of a change, and older changes
    # of a user behind newer ones (in one shard: Lambda hands them over in that order).
    changes = 6 * 3 + 2 + 1
    assert bridge.written == changes + bridge.duplicated and bridge.duplicated == changes // 3
    assert bridge.delayed == changes // 4
    orders = delivered_orders(stream_arn)
    assert sum(len(o) for o in orders.values()) == bridge.written
    assert any(len(set(o)) < len(o) for o in orders.values())  # a duplicate
    assert any(b < a for o in orders.values() for a, b in zip(o, o[1:], strict=False))  # an older one, late

    assert sorted(report.caught_up) == ["crm-sync", "search-indexer"] and report.stalled == []
    assert queue_count(failures) == 0 and queue_count(parking) == 0  # nothing failed, nothing captured

    monkeypatch.setenv("SEARCH_URL", search_url)  # read the index the function wrote
    sink = si.get_sink()
    for uid, item in final.items():
        doc = sink.get(uid)
        if item is None:
            assert doc["deleted"] is True, doc
        else:
            expected = si.build_document(item)
            assert not doc["deleted"] and {k: doc[k] for k in expected} == expected, (uid, doc)

    contacts = {c["properties"]["email"]: c["properties"] for c in crm.active()}
    wanted = {item["email"]: cs.contact_properties(item) for item in final.values() if item is not None}
    assert {email: {k: props.get(k) for k in wanted[email]} for email, props in contacts.items()
            if email in wanted} == wanted
    assert sorted(contacts) == sorted(wanted)  # the deleted user's contact stays archived
