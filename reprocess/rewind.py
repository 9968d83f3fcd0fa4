"""Rewind: re-run ``[since, until)`` of a consumer's DynamoDB stream through its ``handle_record``.

DynamoDB Streams has no "from a timestamp" iterator, so each shard is read from
``TRIM_HORIZON`` (or after its checkpoint) and records are placed by their
``ApproximateCreationDateTime``: before ``since`` they are skipped, at or after ``until``
the shard is finished for this job. Every shard the stream still lists is read, closed ones
included, **in lineage order**: a part is one lineage (a shard with no readable parent, then
its descendants, parents before children), so the changes of one item, which stay within a
lineage across shard roll-overs and splits, run in stream order. Parts run in parallel.

Within a part, tumbling windows of ``window_s`` run in order: all of the lineage's records
of one window before any record of the next. A part's checkpoint is its window and, per
shard, the last sequence number consumed (handled, captured or skipped), saved after every
batch, so an interrupted rewind resumes where it stopped.

Each record runs in the consumer's mode: ``replay`` as read (converted to Lambda's format
by ``stream_reader.to_lambda_record``), ``latest`` rebuilt from the item as it is now
(``reprocess.latest``), so a rewind never writes older state over newer. Failures are
captured to the failure queue (``reprocess.feed``).

Retention: DynamoDB Streams keep records for 24 hours. ``--since`` earlier than that is
refused, naming the oldest time available (records may already be trimmed, and a rewind
must not look complete when it is not). A stream younger than ``--since`` is no loss: it
holds every change since it began (the summary notes it).

Reading pace: at most one ``GetRecords`` per shard every ``read_interval_s`` (0.5 s): the
stream's consumers share a limit of 5 reads per second per shard.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from streamkit.timefmt import iso

from .feed import run_batch
from .job import JobError, PartState, RunContext
from .stream_reader import iter_shard, to_lambda_record

DYNAMODB_STREAMS_RETENTION = timedelta(hours=24)
BATCH = 100  # records per feed batch (and per checkpoint save)
READ_INTERVAL_S = 0.5
MAX_PAGES_PER_CURSOR = 10**8  # bounded, and never reached before the end of a real shard


class RetentionError(JobError):
    """The time range asked for starts before the oldest record the source can still hold."""


def created_at(record: dict) -> datetime:
    """A boto3 stream record's ``ApproximateCreationDateTime`` as an aware datetime."""
    value = record["dynamodb"]["ApproximateCreationDateTime"]
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def describe_stream(streams: Any, stream_arn: str) -> dict:
    """The stream's description with every shard (``DescribeStream`` pages through them)."""
    shards: list[dict] = []
    kwargs: dict[str, Any] = {"StreamArn": stream_arn}
    desc: dict = {}
    for _ in range(10_000):
        desc = streams.describe_stream(**kwargs)["StreamDescription"]
        shards += desc.get("Shards") or []
        last = desc.get("LastEvaluatedShardId")
        if not last:
            break
        kwargs["ExclusiveStartShardId"] = last
    return {**desc, "Shards": shards}


def lineages(shards: list[dict]) -> list[list[str]]:
    """Shards grouped by lineage, each in read order (parent before child; siblings by their
    first sequence number). A shard whose parent the stream no longer lists starts a lineage."""
    ids = {s["ShardId"] for s in shards}
    start = {s["ShardId"]: int((s.get("SequenceNumberRange") or {}).get("StartingSequenceNumber") or 0) for s in shards}
    children: dict[str, list[str]] = defaultdict(list)
    roots = []
    for s in shards:
        parent = s.get("ParentShardId")
        if parent and parent in ids:
            children[parent].append(s["ShardId"])
        else:
            roots.append(s["ShardId"])
    out = []
    for root in sorted(roots, key=lambda sid: (start[sid], sid)):
        order, queue = [], [root]
        while queue:  # breadth first: a whole generation before the next
            sid = queue.pop(0)
            order.append(sid)
            queue += sorted(children.get(sid, ()), key=lambda c: (start[c], c))
        out.append(order)
    return out


def windows(since: datetime, until: datetime, window_s: int) -> int:
    return max(1, math.ceil((until - since).total_seconds() / window_s))


def window_end(source: dict, k: int) -> datetime:
    since, until = _dt(source["since"]), _dt(source["until"])
    return min(since + timedelta(seconds=source["windowS"] * (k + 1)), until)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def plan(streams: Any, stream_arn: str, since: datetime, until: datetime, window_s: int, *,
         now: datetime | None = None) -> dict:
    """The stream's lineages and the windows for ``[since, until)``; ``RetentionError`` when
    ``since`` is older than the stream can hold."""
    now = now or datetime.now(UTC)
    oldest = now - DYNAMODB_STREAMS_RETENTION
    if since < oldest:
        raise RetentionError(
            f"--since {iso(since)} is before the oldest record the stream can hold ({iso(oldest)}: DynamoDB "
            f"Streams keep records for 24 hours); rewind from {iso(oldest)} or later, or rebuild older state "
            "from the table with 'reprocess.py backfill'")
    if until > now + timedelta(seconds=1):
        raise JobError(f"--until {iso(until)} is in the future (now {iso(now)})")
    desc = describe_stream(streams, stream_arn)
    notes = []
    created = desc.get("CreationRequestDateTime")
    if isinstance(created, datetime):
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        if created > since:  # nothing is missing: the stream holds everything since it began
            notes.append(f"the stream began at {iso(created)}, after --since: it holds nothing older (an "
                         "earlier stream of the table, if any, is not read)")
    parts = lineages(desc["Shards"])
    return {
        "streamArn": stream_arn, "since": iso(since), "until": iso(until), "windowS": window_s,
        "windows": windows(since, until, window_s), "lineages": parts, "oldestAvailable": iso(oldest),
        "shards": sum(len(p) for p in parts), "notes": notes,
    }


class ShardCursor:
    """A shard read forward once, one record of look-ahead, paced."""

    def __init__(self, streams: Any, stream_arn: str, shard_id: str, after: str | None, *,
                 read_interval_s: float = READ_INTERVAL_S):
        self._records: Iterator[dict] = iter_shard(
            streams, stream_arn, shard_id,
            iterator_type="AFTER_SEQUENCE_NUMBER" if after else "TRIM_HORIZON",
            sequence_number=after, max_pages=MAX_PAGES_PER_CURSOR, min_interval_s=read_interval_s)
        self._next: dict | None = None
        self.exhausted = False

    def peek(self) -> dict | None:
        if self._next is None and not self.exhausted:
            self._next = next(self._records, None)
            if self._next is None:
                self.exhausted = True
        return self._next

    def advance(self) -> dict:
        record, self._next = self._next, None
        assert record is not None
        return record


class RewindRunner:
    """Runs one lineage of a rewind job (``PartRunner``)."""

    def __init__(self, *, streams: Any, feeder_for: Any, dry_run: bool, read_interval_s: float = READ_INTERVAL_S):
        self.streams, self.feeder_for, self.dry_run = streams, feeder_for, dry_run
        self.read_interval_s = read_interval_s

    def run(self, state: PartState, ctx: RunContext) -> None:
        source = ctx.job.source
        arn = source["streamArn"]
        since, until = _dt(source["since"]), _dt(source["until"])
        lineage = source["lineages"][int(state.part)]
        cp = state.checkpoint
        cp.setdefault("window", 0)
        shards = cp.setdefault("shards", {})
        feeder = None if self.dry_run else self.feeder_for(state.part, ctx)
        cursors: dict[str, ShardCursor] = {}
        while cp["window"] < source["windows"]:
            end = window_end(source, cp["window"])
            for sid in lineage:
                pos = shards.setdefault(sid, {"last": None, "done": False})
                if pos["done"]:
                    continue
                cursor = cursors.get(sid)
                if cursor is None:
                    cursor = cursors[sid] = ShardCursor(self.streams, arn, sid, pos["last"],
                                                        read_interval_s=self.read_interval_s)
                if not self._window_of_shard(state, ctx, cursor, pos, since, until, end, arn, feeder):
                    return
            cp["window"] += 1
            ctx.save(state)
            reason = ctx.stop_reason()
            if reason and cp["window"] < source["windows"]:
                ctx.halt(state, reason)
                return
        state.status = "done"

    def _window_of_shard(self, state: PartState, ctx: RunContext, cursor: ShardCursor, pos: dict,
                         since: datetime, until: datetime, end: datetime, arn: str, feeder: Any) -> bool:
        """Consume this shard's records before ``end``; ``False`` when the part must stop."""
        batch: list[dict] = []
        consumed: str | None = None  # the last sequence number read, handled or skipped
        while True:
            if len(batch) >= BATCH or ctx.stop_reason():
                if not self._flush(state, ctx, batch, pos, consumed, arn, feeder):
                    return False
                batch, consumed = [], None
                reason = ctx.stop_reason()
                if reason:
                    ctx.halt(state, reason)
                    ctx.save(state)
                    return False
            record = cursor.peek()
            if record is None:  # a closed shard read to its end, or the tip of an open one
                pos["done"] = True
                break
            when = created_at(record)
            if when >= until:
                pos["done"] = True
                break
            if when >= end:
                break
            cursor.advance()
            consumed = record["dynamodb"]["SequenceNumber"]
            state.counts.read += 1
            if when < since:
                state.counts.skipped += 1
                continue
            batch.append(record)
        return self._flush(state, ctx, batch, pos, consumed, arn, feeder)

    def _flush(self, state: PartState, ctx: RunContext, batch: list[dict], pos: dict, consumed: str | None,
               arn: str, feeder: Any) -> bool:
        records = [to_lambda_record(r, arn) for r in batch]
        done = run_batch(feeder, records, state, ctx)
        for r in batch[:done]:
            state.counts.seen(iso(created_at(r)))
            state.counts.by_event[r.get("eventName") or "?"] += 1
        if done == len(records):
            if consumed is not None:
                pos["last"] = consumed
            ctx.save(state)
            return True
        # stopped inside the batch: the records not done are read again on resume
        state.counts.read -= len(records) - done
        if done:
            pos["last"] = batch[done - 1]["dynamodb"]["SequenceNumber"]
        ctx.save(state)
        return False
