"""An emulator of Lambda's stream event-source mappings (ESM), for moto: DynamoDB Streams and
Kinesis (Kinesis Data Streams for DynamoDB, through enhanced fan-out consumers).

moto cannot run mappings (it would invoke functions through Docker), so the local runtime
reads each mapping's settings from the packaged template and polls the stream itself
(``local.shards`` reads either source; on Kinesis, ``local.bridge`` first copies the table's
changes into the stream, as the table's KinesisStreamSpecification does on AWS):

* each mapping keeps its own position per shard (a live shard iterator plus the records read
  but not yet checkpointed); one mapping blocked on a failing record never holds others back;
* records are converted to Lambda's format, filtered (``FilterCriteria``; filtered-out records
  are checkpointed, never delivered), batched (``BatchSize``, ``MaximumBatchingWindowInSeconds``)
  and delivered to the function in-process (see ``local.functions``);
* a thrown exception (or a malformed partial response) fails the whole batch; with
  ``ReportBatchItemFailures`` the mapping checkpoints before the lowest reported sequence
  number and retries from there; ``BisectBatchOnFunctionError`` halves a failing batch
  (splitting does not count as a retry, as on Lambda); ``MaximumRetryAttempts`` and
  ``MaximumRecordAgeInSeconds`` discard records and send Lambda's metadata-only invocation
  record (``DDBStreamBatchInfo``, or ``KinesisBatchInfo`` on Kinesis) to the on-failure
  destination (SQS or SNS);
* retries wait a small exponential backoff (``retry_backoff_s``; 0 in tests).

Everything runs on one thread, one invocation at a time.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamkit import onfailure  # the on-failure record's one owner
from streamkit.sources import filter_view
from streamkit.timefmt import iso_from_epoch

from .filters import matches_any, parse_filters
from .functions import FunctionRuntime, short_error
from .metrics import FunctionMetrics
from .shards import DynamoDBStreamShards, KinesisShards

DEFAULT_STATE_PATH = ".local-state/esm.json"


@dataclass(frozen=True)
class MappingConfig:
    """One ``AWS::Lambda::EventSourceMapping``'s settings (defaults are Lambda's)."""

    name: str  # the mapping's logical id in the template
    function: str  # the function's deployed name
    stream_arn: str  # the stream read (a Kinesis consumer's stream for a fan-out mapping)
    batch_size: int = 100
    starting_position: str = "LATEST"
    max_batching_window_s: float = 0
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    on_failure_arn: str | None = None
    filter_criteria: dict | None = None
    enabled: bool = True
    source: str = "dynamodb"  # or "kinesis"
    consumer_arn: str | None = None  # the enhanced fan-out consumer a Kinesis mapping reads through

    @property
    def event_source_arn(self) -> str:
        """What the mapping's EventSourceArn is on AWS (the consumer's ARN for fan-out)."""
        return self.consumer_arn or self.stream_arn

    @classmethod
    def from_properties(cls, name: str, props: dict, *, function: str, stream_arn: str,
                        on_failure_arn: str | None, source: str = "dynamodb",
                        consumer_arn: str | None = None) -> MappingConfig:
        """From CloudFormation properties (intrinsics already resolved by the caller)."""
        return cls(
            name=name,
            function=function,
            stream_arn=stream_arn,
            source=source,
            consumer_arn=consumer_arn,
            batch_size=int(props.get("BatchSize", 100)),
            starting_position=str(props.get("StartingPosition", "LATEST")),
            max_batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
            max_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
            max_record_age_s=int(props.get("MaximumRecordAgeInSeconds", -1)),
            on_failure_arn=on_failure_arn,
            filter_criteria=props.get("FilterCriteria"),
            enabled=bool(props.get("Enabled", True)),
        )

    def lambda_settings(self) -> dict:
        """The settings under Lambda's names, as GetEventSourceMapping shows them."""
        out: dict[str, Any] = {
            "BatchSize": self.batch_size,
            "StartingPosition": self.starting_position,
            "MaximumBatchingWindowInSeconds": self.max_batching_window_s,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_batch_item_failures else [],
            "BisectBatchOnFunctionError": self.bisect_on_error,
            "MaximumRetryAttempts": self.max_retry_attempts,
            "MaximumRecordAgeInSeconds": self.max_record_age_s,
            "DestinationConfig": {"OnFailure": {"Destination": self.on_failure_arn} if self.on_failure_arn else {}},
        }
        if self.filter_criteria:
            out["FilterCriteria"] = self.filter_criteria
        return out

    @staticmethod
    def unsupported(props: dict) -> list[str]:
        """Template properties the emulator does not honour (reported, not silently dropped)."""
        known = {"BatchSize", "StartingPosition", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes",
                 "BisectBatchOnFunctionError", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds",
                 "DestinationConfig", "FilterCriteria", "Enabled", "EventSourceArn", "FunctionName",
                 "MetricsConfig"}  # CloudWatch metrics only: nothing to emulate
        return sorted(k for k, v in props.items() if k not in known and v not in (None, 1, False)
                      and not (k == "ParallelizationFactor" and v == 1))


@dataclass
class Pending:
    """A record read from the shard, not yet checkpointed."""

    record: dict
    seq: str
    created: float  # what its age counts from: creation (DynamoDB Streams) or arrival (Kinesis), epoch s


@dataclass
class Counters:
    read: int = 0
    filtered: int = 0
    delivered: int = 0  # records in invocations (a retried record counts again)
    succeeded: int = 0  # records checkpointed after a successful invocation
    discarded: int = 0  # records dropped after retries / record age (metadata sent on failure)
    invocations: int = 0
    failed_invocations: int = 0


@dataclass
class ShardState:
    shard_id: str
    iterator: str | None
    buffer: deque = field(default_factory=deque)
    last_read_seq: str | None = None
    checkpoint_seq: str | None = None  # last sequence number done with (handled/filtered/discarded)
    caught_up: bool = False
    attempts: int = 0  # failed invocations of the record at the head of the buffer
    batch_limit: int | None = None  # after a bisect: the reduced batch size
    split_end_seq: str | None = None  # ...until the records of the originally failed batch are done
    next_attempt_at: float = 0.0
    stalled_failures: int = 0  # consecutive failed invocations without progress
    first_buffered_at: float | None = None
    last_error: str | None = None


def _seq_key(seq: str) -> int:
    return int(seq)


class PartialResponseError(ValueError):
    """The function's batchItemFailures response is malformed: Lambda fails the whole batch."""


def failed_index(response: Any, batch: list[Pending]) -> int | None:
    """Index of the lowest reported record, None for success; raises for a malformed response."""
    if response is None or not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if not failures:
        return None
    if not isinstance(failures, list):
        raise PartialResponseError(f"batchItemFailures must be a list, got {type(failures).__name__}")
    positions = {p.seq: i for i, p in enumerate(batch)}
    lowest = None
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident:
            raise PartialResponseError(f"malformed itemIdentifier in {item!r}")
        if ident not in positions:
            raise PartialResponseError(f"itemIdentifier {ident!r} is not a sequence number in this batch")
        lowest = positions[ident] if lowest is None else min(lowest, positions[ident])
    return lowest


class Mapping:
    """One event-source mapping: its settings, function, per-shard positions and counters."""

    def __init__(self, config: MappingConfig, function: FunctionRuntime, emulator: Emulator):
        self.config = config
        self.function = function
        self.em = emulator
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"esm:{config.name}:{config.function}"))
        self.filters = parse_filters(config.filter_criteria)
        self.shards: dict[str, ShardState] = {}
        self.counters = Counters()
        self.metrics = FunctionMetrics()  # what CloudWatch would hold for the function
        self.last_error: str | None = None
        self.reader = (KinesisShards(emulator.kinesis, config.stream_arn) if config.source == "kinesis"
                       else DynamoDBStreamShards(emulator.streams, config.stream_arn))
        self._discover_shards()

    # ---- reading ----------------------------------------------------------------------
    def _discover_shards(self) -> None:
        for sid in self.reader.shard_ids():
            if sid in self.shards:
                continue
            kind = "TRIM_HORIZON" if self.config.starting_position == "TRIM_HORIZON" else "LATEST"
            self.shards[sid] = ShardState(sid, self.reader.iterator(sid, kind))

    def _fill(self, shard: ShardState) -> None:
        if shard.iterator is None:  # a closed shard, read to its end
            shard.caught_up = True
            return
        if len(shard.buffer) >= self.config.batch_size:
            return
        reads, shard.iterator = self.reader.read(shard.shard_id, shard.iterator, self.em.clock())
        shard.caught_up = not reads
        for read in reads:
            seq = read.seq
            self.counters.read += 1
            shard.last_read_seq = seq
            if not matches_any(filter_view(read.record), self.filters):
                self.counters.filtered += 1
                if not shard.buffer:  # nothing pending before it: checkpoint past it
                    shard.checkpoint_seq = seq
                continue
            if not shard.buffer:
                shard.first_buffered_at = self.em.clock()
            shard.buffer.append(Pending(read.record, seq, read.created_s))

    # ---- one step ---------------------------------------------------------------------
    def step(self) -> bool:
        """Do at most one invocation per shard that is due. Returns True if anything moved."""
        if not self.config.enabled:
            return False
        if not self.shards:
            self._discover_shards()
        progressed = False
        for shard in self.shards.values():
            if self.em.clock() < shard.next_attempt_at:
                continue
            before = (shard.last_read_seq, shard.checkpoint_seq)
            self._fill(shard)
            self._expire(shard)
            if shard.buffer and self._window_ready(shard):
                self._invoke(shard)
            progressed |= (shard.last_read_seq, shard.checkpoint_seq) != before
        self.metrics.iterator_age(self.em.clock(), self.iterator_age_s())
        return progressed

    def _window_ready(self, shard: ShardState) -> bool:
        window = self.config.max_batching_window_s
        if window <= 0 or len(shard.buffer) >= self.config.batch_size or shard.attempts:
            return True
        return shard.first_buffered_at is None or self.em.clock() - shard.first_buffered_at >= window

    def _expire(self, shard: ShardState) -> None:
        max_age = self.config.max_record_age_s
        if max_age < 0 or not shard.buffer:
            return
        now = self.em.clock()
        expired = []
        while shard.buffer and now - shard.buffer[0].created > max_age:
            expired.append(shard.buffer[0])
            self._checkpoint(shard, 1)
        if expired:
            self.counters.discarded += len(expired)
            self.em.log(f"[{self.config.function}] {len(expired)} record(s) older than {max_age}s discarded "
                        f"(MaximumRecordAgeInSeconds); metadata -> on-failure destination")
            self._on_failure(shard, expired, "RecordAgeExceeded", shard.attempts, function_error=None)
            shard.attempts = 0

    def _batch(self, shard: ShardState) -> list[Pending]:
        limit = min(self.config.batch_size, shard.batch_limit or self.config.batch_size)
        batch = []
        for p in shard.buffer:
            if len(batch) >= limit:
                break
            if batch and shard.split_end_seq is not None and _seq_key(p.seq) > _seq_key(shard.split_end_seq):
                break
            batch.append(p)
        return batch

    def _checkpoint(self, shard: ShardState, n: int) -> None:
        for _ in range(n):
            done = shard.buffer.popleft()
            shard.checkpoint_seq = done.seq
        if shard.split_end_seq is not None and (
            not shard.buffer or _seq_key(shard.buffer[0].seq) > _seq_key(shard.split_end_seq)
        ):
            shard.split_end_seq, shard.batch_limit = None, None
        if not shard.buffer:
            shard.first_buffered_at = None
            # records filtered out behind the pending ones are done too
            if shard.last_read_seq and _seq_key(shard.last_read_seq) > _seq_key(shard.checkpoint_seq or "0"):
                shard.checkpoint_seq = shard.last_read_seq

    def _invoke(self, shard: ShardState) -> None:
        batch = self._batch(shard)
        event = {"Records": [p.record for p in batch]}
        self.counters.invocations += 1
        self.counters.delivered += len(batch)
        error: str | None = None
        lowest: int | None = None
        started = self.em.clock()
        try:
            response = self.function.invoke(event)
            timeout = self.function.config.timeout_s
            if self.em.clock() - started > timeout:
                # Lambda would have stopped it: the side effects happened, the batch failed
                error = f"Task timed out after {timeout:.2f} seconds"
            elif self.config.report_batch_item_failures:
                lowest = failed_index(response, batch)
        except Exception as exc:  # the function errored: the whole batch failed
            error = short_error(exc)
        self.metrics.invocation(self.em.clock(), self.function.last_counts(), error=error is not None)

        if error is None and lowest is None:  # success
            self.counters.succeeded += len(batch)
            self._checkpoint(shard, len(batch))
            shard.attempts = shard.stalled_failures = 0
            shard.last_error = None
            return

        self.counters.failed_invocations += 1
        shard.stalled_failures += 1
        if error is None:  # partial failure: checkpoint before the lowest reported record
            assert lowest is not None
            self.counters.succeeded += lowest
            if lowest:
                self._checkpoint(shard, lowest)
                shard.attempts = 0
            failing = batch[lowest:]
            shard.last_error = f"batch item failure reported at sequence number {failing[0].seq}"
        else:
            failing = batch
            shard.last_error = error
            if self.config.bisect_on_error and len(batch) > 1:
                shard.batch_limit = (len(batch) + 1) // 2
                shard.split_end_seq = batch[-1].seq
                self.last_error = shard.last_error
                self.em.log(f"[{self.config.function}] batch of {len(batch)} failed ({error}); bisecting")
                return  # splitting does not count towards MaximumRetryAttempts
        self.last_error = shard.last_error
        shard.attempts += 1
        max_retries = self.config.max_retry_attempts
        if max_retries >= 0 and shard.attempts > max_retries:
            self.em.log(f"[{self.config.function}] retries exhausted after {shard.attempts} attempt(s); "
                        f"discarding {len(failing)} record(s) {failing[0].seq}..{failing[-1].seq}")
            self.counters.discarded += len(failing)
            self._checkpoint(shard, len(failing))
            self._on_failure(shard, failing, "RetryAttemptsExhausted", shard.attempts,
                             function_error="Unhandled" if error else None)
            shard.attempts = shard.stalled_failures = 0
            return
        shard.next_attempt_at = self.em.clock() + self.em.backoff(shard.attempts)

    # ---- on-failure destination -------------------------------------------------------
    def _on_failure(self, shard: ShardState, records: list[Pending], condition: str,
                    invoke_count: int, *, function_error: str | None) -> None:
        dest = self.config.on_failure_arn
        message = onfailure.build(
            onfailure.BatchInfo(
                shard_id=shard.shard_id,
                start_sequence_number=records[0].seq,
                end_sequence_number=records[-1].seq,
                stream_arn=self.config.stream_arn,
                batch_size=len(records),
                first_arrival=onfailure.arrival_iso(records[0].created),
                last_arrival=onfailure.arrival_iso(records[-1].created),
                source=self.config.source,
            ),
            function_arn=self.function.config.function_arn,
            condition=condition,
            invoke_count=invoke_count,
            function_error=function_error,
            at_epoch_s=self.em.clock(),
            # an S3 destination keeps the whole invocation: the records outlive the stream
            records=[p.record for p in records] if dest and onfailure.is_s3_destination(dest) else None,
        )
        if not dest:
            return  # Lambda bypasses the records when no destination is set
        key = onfailure.s3_object_key(self.uuid, shard.shard_id, self.em.clock())
        self.em.send_to_destination(dest, message, s3_key=key)

    # ---- reporting --------------------------------------------------------------------
    def iterator_age_s(self) -> float:
        """Age of the oldest record read but not yet processed (0 when caught up)."""
        now = self.em.clock()
        ages = [now - s.buffer[0].created for s in self.shards.values() if s.buffer]
        return max(0.0, max(ages)) if ages else 0.0

    @property
    def idle(self) -> bool:
        return all(s.caught_up and not s.buffer for s in self.shards.values())

    def stalled(self, after: int) -> bool:
        return any(s.buffer and s.stalled_failures >= after for s in self.shards.values())

    def status(self) -> str:
        if not self.config.enabled:
            return "disabled"
        if any(s.stalled_failures for s in self.shards.values() if s.buffer):
            return "retrying"
        return "caught-up" if self.idle else "processing"

    def state(self) -> dict:
        return {
            "uuid": self.uuid,
            "name": self.config.name,
            "functionName": self.config.function,
            "eventSourceArn": self.config.event_source_arn,
            "source": self.config.source,
            "streamArn": self.config.stream_arn,
            "state": "Enabled" if self.config.enabled else "Disabled",
            "status": self.status(),
            "settings": self.config.lambda_settings(),
            "iteratorAgeSeconds": round(self.iterator_age_s(), 3),
            "lastError": self.last_error,
            "counters": asdict(self.counters),
            "function": self.metrics.state(),
            "shards": {
                sid: {
                    "checkpointSequenceNumber": s.checkpoint_seq,
                    "nextSequenceNumber": s.buffer[0].seq if s.buffer else None,
                    "lastReadSequenceNumber": s.last_read_seq,
                    "pendingRecords": len(s.buffer),
                    "attempts": s.attempts,
                    "lastError": s.last_error,
                }
                for sid, s in self.shards.items()
            },
        }


@dataclass
class IdleReport:
    rounds: int
    caught_up: list[str]
    stalled: list[str]

    @property
    def ok(self) -> bool:
        return not self.stalled


class Emulator:
    """Polls every mapping round-robin on one thread; see the module docstring."""

    def __init__(
        self,
        mappings: list[MappingConfig],
        functions: dict[str, FunctionRuntime],
        *,
        streams_client: Any = None,
        kinesis_client: Any = None,
        bridges: list | tuple = (),
        sqs_client: Any = None,
        sns_client: Any = None,
        s3_client: Any = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        retry_backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        state_path: str | os.PathLike | None = None,
        log: Callable[[str], None] | None = None,
    ):
        import boto3

        self.streams = streams_client or boto3.client("dynamodbstreams")
        self._kinesis = kinesis_client
        self.bridges = list(bridges)  # local.bridge.KinesisBridge: table changes -> Kinesis, before each poll
        self._sqs, self._sns = sqs_client, sns_client
        self._s3: Any = s3_client
        self.clock, self.sleep = clock, sleep
        self.retry_backoff_s, self.max_backoff_s = retry_backoff_s, max_backoff_s
        self.state_path = Path(state_path or os.environ.get("LOCAL_ESM_STATE", DEFAULT_STATE_PATH))
        self.log = log or (lambda msg: None)
        self.functions = functions
        missing = [m.function for m in mappings if m.function not in functions]
        if missing:
            raise KeyError(f"mappings name functions that are not deployed: {sorted(set(missing))}")
        self.pump()  # changes made before the mappings exist are in the stream, as on AWS
        self.mappings = [Mapping(m, functions[m.function], self) for m in mappings]
        self._queue_urls: dict[str, str] = {}
        self._last_state_write = 0.0
        self._last_queue_sample = float("-inf")

    @property
    def kinesis(self) -> Any:
        if self._kinesis is None:
            import boto3

            self._kinesis = boto3.client("kinesis")
        return self._kinesis

    def pump(self) -> int:
        """Let every bridge copy the table changes made since the last poll into Kinesis."""
        return sum(bridge.pump() for bridge in self.bridges)

    @property
    def pending(self) -> int:
        """Changes a bridge holds back for its next pump (``KinesisBridge.late_every``)."""
        return sum(getattr(bridge, "pending", 0) for bridge in self.bridges)

    # ---- destinations -----------------------------------------------------------------
    def send_to_destination(self, arn: str, message: dict, *, s3_key: str | None = None) -> None:
        """SQS, SNS, or an S3 bucket (the object at ``s3_key``, as Lambda names it)."""
        import boto3

        body = json.dumps(message)
        service = arn.split(":")[2]
        if service == "sqs":
            self._sqs = self._sqs or boto3.client("sqs")
            if arn not in self._queue_urls:
                _, _, _, _, account, name = arn.split(":", 5)
                self._queue_urls[arn] = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._sqs.send_message(QueueUrl=self._queue_urls[arn], MessageBody=body)
        elif service == "sns":
            self._sns = self._sns or boto3.client("sns")
            self._sns.publish(TopicArn=arn, Message=body)
        elif onfailure.is_s3_destination(arn) and s3_key:
            self._s3 = self._s3 or boto3.client("s3")
            self._s3.put_object(Bucket=arn.rsplit(":", 1)[1], Key=s3_key, Body=body.encode(),
                                ContentType="application/json")
        else:
            raise ValueError(f"unsupported on-failure destination {arn!r} (SQS queue, SNS topic or S3 bucket)")

    def backoff(self, attempts: int) -> float:
        return min(self.max_backoff_s, self.retry_backoff_s * (2 ** max(0, attempts - 1)))

    # ---- running ----------------------------------------------------------------------
    def mapping(self, function_or_name: str) -> Mapping:
        for m in self.mappings:
            if function_or_name in (m.config.function, m.config.name):
                return m
        raise KeyError(f"no mapping for {function_or_name!r}")

    def step(self) -> bool:
        """One round: each mapping does at most one invocation per shard."""
        progressed = self.pump() > 0
        for m in self.mappings:
            progressed |= m.step()
        self._sample_queues()
        self.write_state(force=False)
        return progressed

    def _sample_queues(self, every_s: float = 10.0) -> None:
        """Each function's failure-queue depth (GetQueueAttributes, never a receive), at most every
        ``every_s``: the local stand-in for the SQS metric the page charts."""
        now = self.clock()
        if now - self._last_queue_sample < every_s:
            return
        self._last_queue_sample = now
        import boto3

        self._sqs = self._sqs or boto3.client("sqs")
        for m in self.mappings:
            url = m.function.config.environment.get("FAILURE_QUEUE_URL")
            if not url:
                continue
            try:
                attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            except Exception:
                continue  # the state file then simply has no depth for this minute
            m.metrics.queue_depth(now, int(attrs.get("ApproximateNumberOfMessages", 0))
                                  + int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)))

    def _wait_hint(self) -> float:
        now = self.clock()
        due = [s.next_attempt_at - now for m in self.mappings for s in m.shards.values() if s.buffer]
        return max(0.0, min(due)) if due else 0.0

    def run_until_idle(self, *, stall_after: int = 3, max_rounds: int = 100_000) -> IdleReport:
        """Poll until every mapping is caught up or stuck (``stall_after`` failed invocations
        in a row on the same records). Bounded by ``max_rounds``."""
        rounds = 0
        while rounds < max_rounds:
            rounds += 1
            progressed = self.step()
            if not self.pending and all(m.idle or m.stalled(stall_after) or not m.config.enabled for m in self.mappings):
                break
            if not progressed:  # waiting on a retry backoff or a batching window: don't spin
                self.sleep(min(max(self._wait_hint(), 0.01), 1.0))
        self.write_state(force=True)
        return IdleReport(
            rounds,
            caught_up=[m.config.function for m in self.mappings if m.idle],
            stalled=[m.config.function for m in self.mappings if m.stalled(stall_after)],
        )

    def run_forever(self, *, poll_interval_s: float = 0.25, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll until ``should_stop()`` or Ctrl-C."""
        try:
            while not should_stop():
                if not self.step():
                    self.sleep(poll_interval_s)
        except KeyboardInterrupt:
            pass
        try:
            self.write_state(force=True)
        except KeyboardInterrupt:  # a second Ctrl-C while saving: the previous state file stays
            pass

    def redeploy(self, function: str, env_updates: dict[str, str] | None = None) -> None:
        """Simulate a new deployment of ``function``: new environment, fresh cold start."""
        runtime = self.functions[function]
        env = dict(runtime.config.environment)
        env.update(env_updates or {})
        runtime.redeploy(env)
        for m in self.mappings:  # new code: its failures so far say nothing about it being stuck
            if m.config.function == function:
                for shard in m.shards.values():
                    shard.stalled_failures = 0  # (attempts still count towards MaximumRetryAttempts)
        self.log(f"[{function}] redeployed (cold start on next invocation)")

    # ---- reporting --------------------------------------------------------------------
    def iterator_ages(self) -> dict[str, float]:
        return {m.config.function: m.iterator_age_s() for m in self.mappings}

    def state(self) -> dict:
        return {"updatedAt": iso_from_epoch(self.clock()), "mappings": [m.state() for m in self.mappings]}

    def write_state(self, *, force: bool = True) -> None:
        """Write the state JSON (for the operator API) atomically; at most ~2/s unless forced."""
        now = time.monotonic()
        if not force and now - self._last_state_write < 0.5:
            return
        self._last_state_write = now
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=1, default=str))
        tmp.replace(self.state_path)
