"""What must hold in every scenario, however the faults fell.

Per invocation: the handler never raises (only an injected crash ends one without an answer);
after each normal return (``check_invocation``):
  * conservation: handled + captured + reported + dropped == records in the batch;
  * ``batchItemFailures`` names exactly the reported records, all of them in the batch;
  * only soft-fail drops, and every drop is logged ("record failed; soft-fail policy moves on");
  * hard-fail never skips: what it reports is a suffix of the batch, nothing is captured;
  * (checked in ``pipeline``) it returned before its function's timeout unless an overrun
    was injected: the deadline margin and the waits for a circuit probe, in scenario time.

At the end (``check_end``), after the drain:
  * every failure queue is empty, nothing was parked (no scenario uses up the attempt budget);
  * the search index equals the table (live documents for items, none or tombstones for
    removed ones), and so do the CRM's active contacts;
  * never two Slack posts for one eventID; a signup never posted was logged as dropped by
    soft-fail or as a doubtful send.
The worker's own invariants (terminates, summary conserved, exit status matches what remains,
nothing left hidden) are checked after each run in ``pipeline``.
"""
from __future__ import annotations

import re
from typing import Any

SOFT_FAIL_DROP = "record failed; soft-fail policy moves on"


def check_invocation(consumer: str, handler: Any, event: dict, response: Any, context: Any, logs: str) -> list[str]:
    problems: list[str] = []
    batch = handler.loop.last_batch
    policy = handler.loop.policy.name
    from streamkit import StreamRecord

    records = event["Records"]
    n = len(records)
    seqs = [StreamRecord(r).sequence_number for r in records]  # either source
    reported = sorted(set(batch.reported))
    accounted = batch.handled + batch.captured + len(reported) + batch.dropped
    if accounted != n:
        problems.append(f"{n} records in, {accounted} accounted for (handled {batch.handled}, captured "
                        f"{batch.captured}, reported {len(reported)}, dropped {batch.dropped})")
    failures = (response or {}).get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(failures, list):
        problems.append(f"response without a batchItemFailures list: {response!r}")
        return problems
    ids = [f.get("itemIdentifier") for f in failures]
    if any(i not in seqs for i in ids):
        problems.append(f"batchItemFailures names records not in the batch: {ids}")
    if ids != [seqs[i] for i in reported]:
        problems.append(f"batchItemFailures {ids} is not the reported records {[seqs[i] for i in reported]}")
    if policy != "soft-fail" and batch.dropped:
        problems.append(f"{policy} dropped {batch.dropped} record(s)")
    if policy == "hard-fail":
        if reported and reported != list(range(reported[0], n)):
            problems.append(f"hard-fail reported {reported}: not the rest of the batch from the first failure")
        if batch.captured:
            problems.append("hard-fail captured records")
    if policy == "soft-fail":
        logged = sum(1 for line in logs.splitlines()
                     if SOFT_FAIL_DROP in line and context.aws_request_id in line)
        if logged != batch.dropped:
            problems.append(f"soft-fail dropped {batch.dropped} record(s) but logged {logged} drop(s)")
    return problems


# --- the end state ------------------------------------------------------------------------------
def _expected_name(item: dict) -> tuple[str, str, str]:
    """(display name, first, last) of a user item as the fixed (compat) consumers see it."""
    if "firstname" in item:
        return f"{item['firstname']} {item['lastname']}", item["firstname"], item["lastname"]
    first, _, last = item["fullname"].partition(" ")
    return item["fullname"], first, last


def _table(run: Any) -> dict[str, dict]:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    items = run.aws["dynamodb"].scan(TableName=run.urls["UsersTable"], ConsistentRead=True)["Items"]
    return {i["user_id"]["S"]: {k: des.deserialize(v) for k, v in i.items()} for i in items}


def _stream(run: Any) -> list[dict]:
    streams = run.aws["dynamodbstreams"]
    shards = streams.describe_stream(StreamArn=run.stream_arn)["StreamDescription"]["Shards"]
    out: list[dict] = []
    for shard in shards:
        it = streams.get_shard_iterator(StreamArn=run.stream_arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            resp = streams.get_records(ShardIterator=it, Limit=1000)
            out += resp["Records"]
            if not resp["Records"]:
                break
            it = resp.get("NextShardIterator")
    return out


def _parked(run: Any, url: str) -> list[str]:
    sqs = run.aws["sqs"]
    reasons = []
    for _ in range(50):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                   WaitTimeSeconds=0, VisibilityTimeout=600).get("Messages", [])
        if not msgs:
            break
        reasons += [(m.get("MessageAttributes") or {}).get("parkReason", {}).get("StringValue", "") for m in msgs]
    return reasons


def check_end(run: Any) -> list[str]:
    from consumers.sinks import open_sink

    from .pipeline import _queue_of, queue_counts

    problems: list[str] = []
    for consumer in ("search-indexer", "slack-notifier", "crm-sync"):
        visible, hidden = queue_counts(run, _queue_of(run, consumer, "failures"))
        if visible + hidden:
            problems.append(f"{consumer}: {visible + hidden} message(s) still in the failure queue after the drain")
        parking = _queue_of(run, consumer, "parking")
        for reason in (_parked(run, parking) if sum(queue_counts(run, parking)) else []):
            problems.append(f"{consumer}: a message was parked ({reason or 'WITHOUT A REASON'})")

    table = _table(run)
    users = {op.user for op in run.scenario.ops}

    index = open_sink(run.functions["search-indexer"].config.environment["SEARCH_URL"], "users")
    try:
        for uid in sorted(users):
            doc, item = index.get(uid), table.get(uid)
            if item is None:
                if doc is not None and not doc.get("deleted"):
                    problems.append(f"index: {uid} was removed from the table but is live in the index: {doc}")
                continue
            want = {"name": _expected_name(item)[0], "email": item["email"], "plan": item["plan"]}
            got = {k: (doc or {}).get(k) for k in want}
            if doc is None or doc.get("deleted") or got != want:
                problems.append(f"index: {uid} is {doc} but the table has {want}")
    finally:
        index.close()

    crm = run.crm
    for uid in sorted(users):
        item = table.get(uid)
        email = f"{uid}@example.com"
        active = [c for c in crm.active() if c["properties"].get("email") == email]
        if item is None:
            if active:
                problems.append(f"crm: {uid} was removed from the table but its contact is active")
            continue
        _, first, last = _expected_name(item)
        want = {"firstname": first, "lastname": last, "plan": item["plan"], "user_id": uid}
        if len(active) != 1:
            problems.append(f"crm: {len(active)} active contacts for {email}, expected 1 with {want}")
            continue
        got = {k: active[0]["properties"].get(k) for k in want}
        if got != want:
            problems.append(f"crm: contact {email} is {got} but the table has {want}")

    bucket = run.urls.get("FailureBucket")
    if bucket:
        run.stats["claim_checks"] = run.aws["s3"].list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    for logical in run.world.deployment.buckets:  # hard-fail: failed invocations its S3 destination kept
        if logical.endswith("OnFailureBucket"):
            run.stats["on_failure_objects"] = run.stats.get("on_failure_objects", 0) + run.aws["s3"].list_objects_v2(
                Bucket=run.urls[logical]).get("KeyCount", 0)
    problems += _check_slack(run)
    return problems


def _check_slack(run: Any) -> list[str]:
    problems: list[str] = []
    posts: dict[str, int] = {}
    for message in run.slack.messages:
        m = re.search(r"\*(.+?)\*", message.get("text", ""))
        name = m.group(1) if m else "?"
        posts[name] = posts.get(name, 0) + 1
    inserts: dict[str, str] = {}  # name at insert -> eventID
    for record in _stream(run):
        if record["eventName"] != "INSERT":
            continue
        image = record["dynamodb"]["NewImage"]
        item = {k: list(v.values())[0] for k, v in image.items()}
        inserts[_expected_name(item)[0]] = record["eventID"]
    lines = run.log_lines()
    dropped = {line.get("event_id") for line in lines if line.get("event") == "record failed; soft-fail policy moves on"}
    doubtful = {str(line.get("key", "")).split("#", 1)[-1] for line in lines if line.get("event") == "doubtful_send"}
    run.stats["slack_doubtful"] = len(doubtful)
    run.stats["slack_dropped"] = len(dropped)
    for name, n in posts.items():
        if name not in inserts:
            problems.append(f"slack: posted {name!r}, which no INSERT wrote")
        elif n > 1:
            problems.append(f"slack: {n} posts for eventID {inserts[name]} ({name})")
    for name, event_id in inserts.items():
        if name not in posts and event_id not in dropped and event_id not in doubtful:
            problems.append(f"slack: signup {name} (eventID {event_id}) was never posted, and neither logged as "
                            "dropped by soft-fail nor as a doubtful send")
    return problems
