"""Backfill: every item of the users table through ``handle_record``, as its current state.

A parallel Scan (``Segment``/``TotalSegments``: one part per segment), with consistent reads
so a page shows every write acknowledged before it was read, rate-limited by the capacity it
consumes (``ReturnConsumedCapacity=TOTAL`` into a ``TokenBucket``), and resumable per
segment: after each page (or at the item where it stopped) the segment's checkpoint is the
key to start after (``ExclusiveStartKey``).

Each item becomes a Lambda-format ``MODIFY`` record with the item as ``NewImage`` and no
``OldImage`` (the state before is unknown; ``MODIFY`` so event consumers that act on
``INSERT``, like slack-notifier, stay quiet). Its ``eventID`` is derived from the job and
the item's key, so a page run again after a resume carries the same id and an idempotency
guard keyed on ``(consumer, eventID)`` recognises it.

**Racing changes.** A change made after the page was read must win over the backfilled
copy, and a change applied long before must lose to it (that is how a backfill repairs a
mis-mapped index): the record carries the order of its read (``reprocess.snapshot``: the
read time minus ``BACKFILL_CLOCK_SKEW_MS`` and the creation-time precision, as
``ApproximateCreationDateTime``) and the lowest sequence number (``"0"``).
"""
from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streamkit.ddbjson import client_image_to_lambda, lambda_image_to_client
from streamkit.timefmt import iso_from_epoch

from .feed import run_batch
from .job import PartState, RunContext
from .ratelimit import TokenBucket
from .snapshot import describe_table, snapshot_stamp
from .stream_reader import region_of

BACKFILL_SEQUENCE_NUMBER = "0"  # below every real sequence number: a tie in time goes to the stream
RCU_BYTES = 4096  # a strongly consistent read unit: 4 KB
_EVENT_NS = uuid.UUID("6f1c3a52-9d0e-4b8f-a6a1-7b2f4e1d9c30")


class BackfillPlanError(ValueError):
    pass


def describe(dynamodb: Any, table: str) -> dict:
    """What a plan needs of the table, plus how far our clock is from DynamoDB's."""
    desc, offset = describe_table(dynamodb, table)
    return {
        "table": table,
        "tableArn": desc.get("TableArn"),
        "streamArn": desc.get("LatestStreamArn"),
        "keyNames": [k["AttributeName"] for k in desc["KeySchema"]],
        "itemCount": int(desc.get("ItemCount") or 0),
        "tableSizeBytes": int(desc.get("TableSizeBytes") or 0),
        "clockOffsetS": offset,
    }


def auto_page_size(rate: float | None, segments: int, item_count: int, size_bytes: int) -> int | None:
    """With a rate, pages of about one second of each segment's share (a 1 MB page costs up
    to 256 RCU at once); without one, DynamoDB's 1 MB pages."""
    if rate is None:
        return None
    avg = size_bytes / item_count if item_count and size_bytes else 1024.0
    return max(1, min(10_000, int(rate / max(1, segments) * RCU_BYTES / max(avg, 1.0))))


def estimate(source: dict, rate: float | None) -> dict:
    """Rough cost of a backfill from the table's size (DescribeTable refreshes it every ~6 h)."""
    rcu = math.ceil(source["tableSizeBytes"] / RCU_BYTES) if source["tableSizeBytes"] else source["itemCount"]
    out = {"items": source["itemCount"], "bytes": source["tableSizeBytes"], "readCapacityUnits": rcu}
    if rate:
        out["secondsAtRate"] = round(rcu / rate, 1)
    return out


def backfill_record(item: dict, key_names: list[str], *, read_at: float, job_id: str, source: dict,
                    clock_skew_s: float) -> dict:
    """One Scan item (boto3's low-level shape) -> a Lambda-format MODIFY record of its state."""
    image = client_image_to_lambda(item) or {}
    keys = {k: image[k] for k in key_names}
    stamp = snapshot_stamp(read_at, clock_skew_s)
    event_id = uuid.uuid5(_EVENT_NS, f"{job_id}:{json.dumps(keys, sort_keys=True)}").hex
    arn = source.get("streamArn") or source.get("tableArn") or ""
    ddb = {
        "ApproximateCreationDateTime": stamp,
        "Keys": keys,
        "NewImage": image,
        "SequenceNumber": BACKFILL_SEQUENCE_NUMBER,
        "SizeBytes": len(json.dumps(image, separators=(",", ":"))),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    record = {"eventID": event_id, "eventName": "MODIFY", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
              "awsRegion": region_of(arn) or "", "dynamodb": ddb, "eventSourceARN": arn}
    return record


@dataclass
class Page:
    items: list[dict]
    last_key: dict | None  # boto3 shape; None: the segment is finished
    read_at: float  # time.time() when the Scan call started
    capacity: float


class SegmentReader:
    """Pages of one segment, the next one read while the current one is handled."""

    def __init__(self, dynamodb: Any, source: dict, segment: int, *, bucket: TokenBucket | None,
                 stop: threading.Event, deadline: Any):
        self.dynamodb, self.source, self.segment = dynamodb, source, segment
        self.bucket, self.stop, self.deadline = bucket, stop, deadline

    def _scan(self, start_key: dict | None) -> Page | None:
        if self.bucket is not None:
            budget = self.deadline.remaining_s()
            if not self.bucket.acquire(self.stop, max_wait_s=None if budget == float("inf") else max(0.0, budget)):
                return None  # stopped, or the wait would cross the deadline
        kwargs: dict[str, Any] = {"TableName": self.source["table"], "Segment": self.segment,
                                  "TotalSegments": self.source["segments"], "ConsistentRead": True,
                                  "ReturnConsumedCapacity": "TOTAL"}
        if self.source.get("pageSize"):
            kwargs["Limit"] = self.source["pageSize"]
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        read_at = time.time()
        resp = self.dynamodb.scan(**kwargs)
        capacity = float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
        if self.bucket is not None:
            self.bucket.consume(capacity)
        return Page(resp.get("Items") or [], resp.get("LastEvaluatedKey"), read_at, capacity)

    def pages(self, start_key: dict | None) -> Generator[Page, None, None]:
        with ThreadPoolExecutor(1, thread_name_prefix=f"scan-{self.segment}") as ahead:
            future: Future[Page | None] | None = ahead.submit(self._scan, start_key)
            while future is not None:
                page = future.result()
                if page is None:
                    return
                future = ahead.submit(self._scan, page.last_key) if page.last_key else None
                try:
                    yield page
                except GeneratorExit:
                    if future is not None:
                        future.cancel()
                    raise


class BackfillRunner:
    """Runs one segment of a backfill job (``PartRunner``)."""

    def __init__(self, *, dynamodb: Any, feeder_for: Any, bucket: TokenBucket | None, dry_run: bool,
                 clock_skew_s: float):
        self.dynamodb, self.feeder_for, self.bucket = dynamodb, feeder_for, bucket
        self.dry_run, self.clock_skew_s = dry_run, clock_skew_s

    def run(self, state: PartState, ctx: RunContext) -> None:
        source = ctx.job.source
        cp = state.checkpoint
        if cp.get("finished"):
            state.status = "done"
            return
        key_names = source["keyNames"]
        start = lambda_image_to_client(cp["lastKey"]) if cp.get("lastKey") else None
        feeder = None if self.dry_run else self.feeder_for(state.part, ctx)
        reader = SegmentReader(self.dynamodb, source, int(state.part), bucket=self.bucket, stop=ctx.stop,
                               deadline=ctx.deadline)
        pages = reader.pages(start)
        try:
            for page in pages:
                state.counts.consumed_rcu += page.capacity
                records = [backfill_record(it, key_names, read_at=page.read_at, job_id=ctx.job.job_id,
                                           source=source, clock_skew_s=self.clock_skew_s) for it in page.items]
                done = run_batch(feeder, records, state, ctx)
                state.counts.read += done
                if records:
                    state.counts.seen(iso_from_epoch(page.read_at))
                if done < len(records):  # stopped inside the page: resume after the last item done
                    if done:
                        last = client_image_to_lambda(page.items[done - 1]) or {}
                        cp["lastKey"] = {k: last[k] for k in key_names}
                    ctx.save(state)
                    return
                state.counts.pages += 1
                if page.last_key is None:
                    cp["finished"] = True
                    cp.pop("lastKey", None)
                    state.status = "done"
                    ctx.save(state)
                    return
                cp["lastKey"] = client_image_to_lambda(page.last_key)
                ctx.save(state)
                reason = ctx.stop_reason()
                if reason:
                    ctx.halt(state, reason)
                    return
            # the reader stopped before a page: a stop, or the rate limit's wait crossing the deadline
            ctx.halt(state, ctx.stop_reason() or "time budget used")
        finally:
            pages.close()
