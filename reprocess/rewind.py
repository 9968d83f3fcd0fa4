"""Rewind: re-run ``[since, until)`` of a consumer's source stream through its ``handle_record``.

Both sources the stack can read (``STREAM_ARN``: DynamoDB Streams or Kinesis Data Streams for
DynamoDB) are read the same way, per shard, **in lineage order**: a part is one lineage (a
shard whose parents are gone, then its descendants, parents before children; on Kinesis a
merge joins two lineages into one), so the changes of one item, which stay within a lineage
across shard roll-overs, splits and merges, run in stream order. Parts run in parallel.

* **DynamoDB Streams** has no iterator "at a time": each shard is read from ``TRIM_HORIZON``
  (or after its checkpoint), records before ``since`` are skipped, and the shard is finished
  at the first record from ``until`` on. Records live 24 hours.
* **Kinesis** starts each shard ``AT_TIMESTAMP`` ``since`` (arrival time: a change arrives
  after it was made). Kinesis Data Streams for DynamoDB may deliver changes late and out of
  order, so records are placed by the change's own ``ApproximateCreationDateTime`` and a shard
  is finished only once a record *arrived* ``KINESIS_LATENESS_S`` after ``until`` (or at the
  tip: ``MillisBehindLatest`` 0). Records live ``RetentionPeriodHours``.

Within a part, tumbling windows of ``window_s`` run in order: all of the lineage's records of
one window before any record of the next. A part's checkpoint is its window and, per shard,
the last sequence number consumed (handled, captured or skipped), saved after every batch, so
an interrupted rewind resumes where it stopped.

Each record runs in the consumer's mode: ``replay`` as read (in Lambda's format, by the
source's reader), ``latest`` rebuilt from the item as it is now (``reprocess.latest``), so a
rewind never writes older state over newer. Failures are captured to the failure queue
(``reprocess.feed``).

Retention: ``--since`` earlier than the source keeps records is refused, naming the oldest
time available (records may already be gone, and a rewind must not look complete when it is
not). A stream younger than ``--since`` is no loss: it holds every change since it began.

Reading pace: at most one ``GetRecords`` per shard every ``read_interval_s`` (0.5 s): a shard
allows 5 reads a second, shared with its other polling readers.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streamkit import sources
from streamkit.ordering import micros_from_creation
from streamkit.timefmt import iso

from . import kinesis_reader, stream_reader
from .feed import run_batch
from .job import JobError, PartState, RunContext

DYNAMODB_STREAMS_RETENTION = timedelta(hours=24)
KINESIS_LATENESS_S = 60.0  # a change may reach Kinesis this long after it was made
BATCH = 100  # records per feed batch (and per checkpoint save)
READ_INTERVAL_S = 0.5
MAX_PAGES_PER_CURSOR = 10**8  # bounded, and never reached before the end of a real shard


class RetentionError(JobError):
    """The time range asked for starts before the oldest record the source can still hold."""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class DynamoDBStreamSource:
    """A table's DynamoDB stream (``dynamodbstreams``)."""

    kind = "dynamodb"
    client = "dynamodbstreams"
    lateness = timedelta(0)

    def describe(self, streams: Any, arn: str, now: datetime) -> tuple[list[dict], datetime, str, datetime | None]:
        """(shards, oldest time kept, why, when the stream began)."""
        shards: list[dict] = []
        kwargs: dict[str, Any] = {"StreamArn": arn}
        desc: dict = {}
        for _ in range(10_000):
            desc = streams.describe_stream(**kwargs)["StreamDescription"]
            shards += desc.get("Shards") or []
            last = desc.get("LastEvaluatedShardId")
            if not last:
                break
            kwargs["ExclusiveStartShardId"] = last
        created = desc.get("CreationRequestDateTime")
        return (shards, now - DYNAMODB_STREAMS_RETENTION, "DynamoDB Streams keep records for 24 hours",
                _aware(created) if isinstance(created, datetime) else None)

    def records(self, streams: Any, arn: str, shard_id: str, after: str | None, since: datetime,
                read_interval_s: float) -> Iterator[dict]:
        return stream_reader.iter_shard(
            streams, arn, shard_id, iterator_type="AFTER_SEQUENCE_NUMBER" if after else "TRIM_HORIZON",
            sequence_number=after, max_pages=MAX_PAGES_PER_CURSOR, min_interval_s=read_interval_s)

    def sequence(self, raw: dict) -> str:
        return raw["dynamodb"]["SequenceNumber"]

    def created(self, raw: dict) -> datetime:
        value = raw["dynamodb"]["ApproximateCreationDateTime"]
        if isinstance(value, datetime):
            return _aware(value)
        return datetime.fromtimestamp(float(value), tz=UTC)

    position = created  # records of a DynamoDB shard are in the order the changes were made

    def to_lambda(self, raw: dict, arn: str, shard_id: str) -> dict:
        return stream_reader.to_lambda_record(raw, arn)


class KinesisSource:
    """A Kinesis Data Streams for DynamoDB stream (``kinesis``)."""

    kind = "kinesis"
    client = "kinesis"
    lateness = timedelta(seconds=KINESIS_LATENESS_S)

    def describe(self, kinesis: Any, arn: str, now: datetime) -> tuple[list[dict], datetime, str, datetime | None]:
        summary = kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
        hours = int(summary.get("RetentionPeriodHours") or 24)
        shards: list[dict] = []
        kwargs: dict[str, Any] = {"StreamARN": arn}
        for _ in range(10_000):
            page = kinesis.list_shards(**kwargs)
            shards += page.get("Shards") or []
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        created = summary.get("StreamCreationTimestamp")
        return (shards, now - timedelta(hours=hours), f"the Kinesis stream keeps records for {hours} hours",
                _aware(created) if isinstance(created, datetime) else None)

    def records(self, kinesis: Any, arn: str, shard_id: str, after: str | None, since: datetime,
                read_interval_s: float) -> Iterator[dict]:
        if after:
            return kinesis_reader.iter_shard(kinesis, arn, shard_id, iterator_type="AFTER_SEQUENCE_NUMBER",
                                             sequence_number=after, max_pages=MAX_PAGES_PER_CURSOR,
                                             min_interval_s=read_interval_s)
        return kinesis_reader.iter_shard(kinesis, arn, shard_id, iterator_type="AT_TIMESTAMP", timestamp=since,
                                         max_pages=MAX_PAGES_PER_CURSOR, min_interval_s=read_interval_s)

    def sequence(self, raw: dict) -> str:
        return raw["SequenceNumber"]

    def created(self, raw: dict) -> datetime:
        """The change's own time (``ApproximateCreationDateTime`` in the record's data)."""
        data = raw["Data"]
        change = json.loads(data if isinstance(data, (bytes, str)) else bytes(data))
        micros = micros_from_creation(change["dynamodb"]["ApproximateCreationDateTime"])
        return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)

    def position(self, raw: dict) -> datetime:
        value = raw.get("ApproximateArrivalTimestamp")
        if isinstance(value, datetime):
            return _aware(value)
        return datetime.fromtimestamp(float(value or 0), tz=UTC)

    def to_lambda(self, raw: dict, arn: str, shard_id: str) -> dict:
        return kinesis_reader.to_lambda_record(raw, arn, shard_id)


SOURCES: dict[str, Any] = {"dynamodb": DynamoDBStreamSource(), "kinesis": KinesisSource()}


def source_for(stream_arn: str) -> Any:
    """The reader of ``stream_arn``: a Kinesis stream (``arn:aws:kinesis:...``) or a DynamoDB stream."""
    service = stream_arn.split(":")[2] if stream_arn.count(":") >= 5 else ""
    return SOURCES["kinesis" if service == "kinesis" else "dynamodb"]


def lineages(shards: list[dict]) -> list[list[str]]:
    """Shards grouped by lineage, each in read order: parents before children, then by first
    sequence number. Shards joined by a parent link (``ParentShardId``, and Kinesis'
    ``AdjacentParentShardId`` of a merge) share a lineage; a parent the stream no longer
    lists (trimmed) links nothing."""
    ids = [s["ShardId"] for s in shards]
    known = set(ids)
    start = {s["ShardId"]: int((s.get("SequenceNumberRange") or {}).get("StartingSequenceNumber") or 0)
             for s in shards}
    parents: dict[str, list[str]] = {
        s["ShardId"]: [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p and p in known]
        for s in shards}
    root = {sid: sid for sid in ids}

    def find(sid: str) -> str:
        while root[sid] != sid:
            root[sid] = root[root[sid]]
            sid = root[sid]
        return sid

    for sid in ids:
        for parent in parents[sid]:
            root[find(sid)] = find(parent)
    groups: dict[str, list[str]] = defaultdict(list)
    for sid in ids:
        groups[find(sid)].append(sid)
    out = []
    for members in groups.values():
        order: list[str] = []
        placed: set[str] = set()
        waiting = sorted(members, key=lambda sid: (start[sid], sid))
        while waiting:  # a shard after all its parents; among the ready ones, the oldest first
            ready = next(sid for sid in waiting if all(p in placed for p in parents[sid]))
            order.append(ready)
            placed.add(ready)
            waiting.remove(ready)
        out.append(order)
    return sorted(out, key=lambda lineage: (start[lineage[0]], lineage[0]))


def windows(since: datetime, until: datetime, window_s: int) -> int:
    return max(1, math.ceil((until - since).total_seconds() / window_s))


def window_end(source: dict, k: int) -> datetime:
    since, until = _dt(source["since"]), _dt(source["until"])
    return min(since + timedelta(seconds=source["windowS"] * (k + 1)), until)


def _ceil_ms(value: datetime) -> datetime:
    """``value`` rounded up to a whole millisecond (``iso`` truncates to one)."""
    extra = value.microsecond % 1000
    return value + timedelta(microseconds=1000 - extra) if extra else value


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def plan(client: Any, stream_arn: str, since: datetime, until: datetime, window_s: int, *,
         now: datetime | None = None) -> dict:
    """The stream's lineages and the windows for ``[since, until)``; ``RetentionError`` when
    ``since`` is older than the stream can hold. ``client`` is the source's (``source_for``)."""
    now = now or datetime.now(UTC)
    source = source_for(stream_arn)
    if until > now + timedelta(seconds=1):
        raise JobError(f"--until {iso(until)} is in the future (now {iso(now)})")
    shards, oldest, why, created = source.describe(client, stream_arn, now)
    if since < oldest:
        raise RetentionError(
            f"--since {iso(since)} is before the oldest record the stream can hold ({iso(oldest)}: {why}); "
            f"rewind from {iso(oldest)} or later, or rebuild older state from the table with "
            "'reprocess.py backfill'")
    notes = []
    if created is not None and created > since:  # nothing is missing: it holds everything since it began
        notes.append(f"the stream began at {iso(created)}, after --since: it holds nothing older (an "
                     "earlier stream of the table, if any, is not read)")
    parts = lineages(shards)
    return {
        # the plan's times are text with milliseconds (``iso``): ``since`` rounds down and ``until``
        # up, so the range stored covers the one asked for (a record made in the same millisecond
        # as, but before, ``until`` stays in it; truncating lost it)
        "source": source.kind, "streamArn": stream_arn, "since": iso(since), "until": iso(_ceil_ms(until)),
        "windowS": window_s, "windows": windows(since, until, window_s), "lineages": parts,
        "oldestAvailable": iso(oldest), "shards": sum(len(p) for p in parts), "notes": notes,
    }


class ShardCursor:
    """A shard read forward once, one record of look-ahead."""

    def __init__(self, records: Iterator[dict]):
        self._records = records
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

    def __init__(self, *, client: Any, feeder_for: Any, dry_run: bool, read_interval_s: float = READ_INTERVAL_S):
        self.client, self.feeder_for, self.dry_run = client, feeder_for, dry_run
        self.read_interval_s = read_interval_s

    def run(self, state: PartState, ctx: RunContext) -> None:
        plan = ctx.job.source
        source = SOURCES[plan.get("source", "dynamodb")]
        since, until = _dt(plan["since"]), _dt(plan["until"])
        lineage = plan["lineages"][int(state.part)]
        cp = state.checkpoint
        cp.setdefault("window", 0)
        shards = cp.setdefault("shards", {})
        feeder = None if self.dry_run else self.feeder_for(state.part, ctx)
        cursors: dict[str, ShardCursor] = {}
        while cp["window"] < plan["windows"]:
            end = window_end(plan, cp["window"])
            for sid in lineage:
                pos = shards.setdefault(sid, {"last": None, "done": False})
                if pos["done"]:
                    continue
                cursor = cursors.get(sid)
                if cursor is None:
                    cursor = cursors[sid] = ShardCursor(source.records(
                        self.client, plan["streamArn"], sid, pos["last"], since, self.read_interval_s))
                shard = _Shard(source, plan["streamArn"], sid, cursor, pos)
                if not self._window_of_shard(state, ctx, shard, since, until, end, feeder):
                    return
            cp["window"] += 1
            ctx.save(state)
            reason = ctx.stop_reason()
            if reason and cp["window"] < plan["windows"]:
                ctx.halt(state, reason)
                return
        state.status = "done"

    def _window_of_shard(self, state: PartState, ctx: RunContext, shard: _Shard, since: datetime,
                         until: datetime, end: datetime, feeder: Any) -> bool:
        """Consume this shard's records before ``end``; ``False`` when the part must stop."""
        source, cursor = shard.source, shard.cursor
        finished_at = until + source.lateness
        batch: list[dict] = []
        consumed: str | None = None  # the last sequence number read, handled or skipped
        finished = False  # the shard holds nothing more of the range: done once this batch is
        while True:
            if len(batch) >= BATCH or ctx.stop_reason():
                if not self._flush(state, ctx, shard, batch, consumed, feeder):
                    return False
                batch, consumed = [], None
                reason = ctx.stop_reason()
                if reason:
                    ctx.halt(state, reason)
                    ctx.save(state)
                    return False
            record = cursor.peek()
            if record is None:  # a closed shard read to its end, or the tip of an open one
                finished = True
                break
            if source.position(record) >= finished_at:  # nothing of the range can follow
                finished = True
                break
            when = source.created(record)
            if since <= when < until and when >= end:
                break  # a later window's
            cursor.advance()
            consumed = source.sequence(record)
            state.counts.read += 1
            if not since <= when < until:
                state.counts.skipped += 1
                continue
            batch.append(record)
        return self._flush(state, ctx, shard, batch, consumed, feeder, finished=finished)

    def _flush(self, state: PartState, ctx: RunContext, shard: _Shard, batch: list[dict], consumed: str | None,
               feeder: Any, *, finished: bool = False) -> bool:
        """Feed ``batch`` and move the shard's checkpoint past what is done. The shard is marked
        done (``finished``: nothing more of the range follows) only when the whole batch is:
        a part stopped inside its last batch must read the rest again on resume."""
        source, pos = shard.source, shard.pos
        records = [source.to_lambda(r, shard.arn, shard.shard_id) for r in batch]
        done = run_batch(feeder, records, state, ctx)
        for raw, record in zip(batch[:done], records[:done], strict=True):
            state.counts.seen(iso(source.created(raw)))
            state.counts.by_event[sources.event_name_of(record) or "?"] += 1
        if done == len(records):
            if consumed is not None:
                pos["last"] = consumed
            if finished:
                pos["done"] = True
            ctx.save(state)
            return True
        # stopped inside the batch: the records not done are read again on resume
        state.counts.read -= len(records) - done
        if done:
            pos["last"] = source.sequence(batch[done - 1])
        ctx.save(state)
        return False


@dataclass
class _Shard:
    """One shard of a lineage while a part reads it."""

    source: Any
    arn: str
    shard_id: str
    cursor: ShardCursor
    pos: dict  # its checkpoint: {"last": sequence number consumed, "done": finished for this job}
