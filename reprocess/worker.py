"""Drain a consumer's failure queue through that consumer's own ``handle_record``.

Public API (stable; the CLI, the reprocess Lambda and the operator API call it):

    from reprocess.worker import drain
    summary = drain("search-indexer", max_messages=100, mode="latest", concurrency=8)
    summary.to_dict()   # taken, succeeded, still_failing, parked, by_error_type, oldest, newest,
                        # exit_code, stopped_by, ...

How a message ends (nothing is deleted unless handled or parked, parking happens first):
- handled            -> deleted (``DeleteMessageBatch``, ``Failed`` entries checked);
- failed again       -> the envelope is re-sent with ``attempts + 1`` and the new error, then
                        the old message is deleted. The history travels in the body, so it
                        survives redrives, console peeks and dry runs (which all inflate
                        ``ApproximateReceiveCount``), and anyone reading the queue sees why.
                        A crash between send and delete leaves a duplicate, never a loss.
- attempts reached ``max_attempts``, or malformed (not JSON, wrong version, unknown
  consumer, another consumer's envelope, a record that is not a stream record, claim check
  missing) -> sent to the parking queue with the reason, then deleted.

It always terminates: at an empty queue, after ``max_messages``, at the time budget, or
when a receive returns only messages already tried in this run (re-sent copies carry the
run id in a message attribute and are left alone until the run ends, then made visible).
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from consumers.registry import CONSUMERS, REPROCESS_MODES, UnknownConsumerError, get_consumer
from streamkit.deadline import Deadline
from streamkit.envelope import (
    EnvelopeError,
    build_envelope,
    describe_error,
    dumps,
    message_attributes,
    now_iso,
    parse_envelope,
)
from streamkit.errors import ConfigError, MalformedRecordError
from streamkit.log import LazyLogger
from streamkit.record import StreamRecord
from streamkit.retry import call_with_retries
from streamkit.sqsbatch import send_batch

from . import backstop
from .latest import build_latest, key_of
from .summary import Summary

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_WAIT_TIME_S = 2
DEFAULT_VISIBILITY_TIMEOUT_S = 120
DRY_RUN_VISIBILITY_S = 30
MAX_MESSAGE_BYTES = 1_048_576  # SQS's largest message; a queue set lower rejects and we keep the original
RUN_ATTRIBUTE = "reprocessRun"
PARK_REASON_ATTRIBUTE = "parkReason"
MAX_ATTRIBUTE_CHARS = 1_000
MAX_IDLE_ROUNDS = 2  # rounds in a row that bring nothing new before "everything was tried"
THREADS_PER_RECEIVE = 2  # one ReceiveMessage (10 messages) per round for every 2 worker threads


class ParkError(Exception):
    """A message that can never succeed as it is; ``reason`` goes with it to the parking queue."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Item:
    """One message taken in this run and what became of it."""

    message: dict
    body: Any = None  # parsed JSON, when it parsed
    envelope: Any = None  # streamkit.envelope.Envelope
    info: backstop.BatchInfo | None = None  # an on-failure message
    group: str = ""
    order: int = 0
    outcome: str = "pending"  # ok | failed | park | skip
    error: dict | None = None
    park_reason: str | None = None
    follow_ups: list[dict] = field(default_factory=list)  # envelopes for records of an on-failure message
    error_type: str | None = None


def _client(service: str, pool: int):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=3,
            read_timeout=30,
            max_pool_connections=max(10, pool),
        ),
    )


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None


def _iso_from_ms(ms: str | None) -> str | None:
    if not ms:
        return None
    dt = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seq_int(record: Any) -> int:
    try:
        return int(record["dynamodb"]["SequenceNumber"])
    except Exception:
        return 0


def resolve_queue_url(sqs, consumer_name: str, kind: str, explicit: str | None = None) -> str | None:
    """``explicit``, else ``<KEY>_FAILURE_QUEUE_URL`` / ``<KEY>_PARKING_QUEUE_URL``, else the
    conventional name resolved with ``GetQueueUrl``; ``None`` when that queue does not exist."""
    if explicit:
        return explicit
    consumer = get_consumer(consumer_name)
    url = consumer.configured_queue_url(kind)
    if url:
        return url
    try:
        return sqs.get_queue_url(QueueName=consumer.queue_name(kind))["QueueUrl"]
    except Exception as exc:
        if _error_code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return None
        raise


class Drainer:
    """One run over one queue. Use ``drain()``; this class holds the run's state."""

    def __init__(
        self,
        consumer_name: str,
        *,
        queue_url: str | None = None,
        parking_queue_url: str | None = None,
        max_messages: int | None = None,
        mode: str | None = None,
        dry_run: bool = False,
        concurrency: int = 1,
        deadline: Deadline | None = None,
        handle_record: Callable[[StreamRecord], Any] | None = None,
        progress: Callable[[Summary], None] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        wait_time_s: int = DEFAULT_WAIT_TIME_S,
        visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
        users_table: str | None = None,
        max_retries: int = 2,
        retry_base_delay_s: float = 0.05,
        receives_per_round: int | None = None,
        sqs=None,
        s3=None,
        dynamodb=None,
        streams=None,
    ):
        try:
            self.consumer = get_consumer(consumer_name)
        except UnknownConsumerError as exc:
            raise ConfigError(str(exc)) from None
        self.mode = mode or self.consumer.reprocess_mode
        if self.mode not in REPROCESS_MODES:
            raise ConfigError(f"mode must be one of {', '.join(REPROCESS_MODES)}, got {self.mode!r}")
        if max_messages is not None and max_messages < 0:
            raise ConfigError(f"max must be >= 0, got {max_messages}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        if max_attempts < 1:
            raise ConfigError(f"max attempts must be >= 1, got {max_attempts}")
        self.users_table = users_table or os.environ.get("USERS_TABLE")
        if self.mode == "latest" and not dry_run and not self.users_table:
            raise ConfigError("latest mode re-reads items from the users table: set USERS_TABLE (or use --mode replay)")
        self.max_messages = max_messages
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.deadline = deadline or Deadline.from_seconds(None)
        self._handle_record = handle_record
        self.progress = progress
        self.max_attempts = max_attempts
        self.wait_time_s = max(0, min(20, int(wait_time_s)))
        # A dry run hides what it reads only briefly (and makes it visible again at the end);
        # a message seen twice in one run is recognised by its id and not counted again.
        self.visibility_timeout_s = min(visibility_timeout_s, DRY_RUN_VISIBILITY_S) if dry_run else visibility_timeout_s
        # A round is what is received together; it is also the window in which records of one
        # key are put in stream order. With the next round read ahead while this one runs,
        # one receive per 2 threads keeps them busy without many empty polls at the tail.
        self.receives_per_round = receives_per_round or max(1, -(-concurrency // THREADS_PER_RECEIVE))
        self.max_retries = max_retries
        self.retry_base_delay_s = retry_base_delay_s
        self.run_id = uuid.uuid4().hex[:16]
        self.log = LazyLogger(component="reprocess", consumer=self.consumer.name, run_id=self.run_id)
        self._clients = {"sqs": sqs, "s3": s3, "dynamodb": dynamodb, "dynamodbstreams": streams}
        self._lock = threading.RLock()

        self.queue_url = self._resolve(queue_url, "failures")
        self._parking_explicit = parking_queue_url
        self._parking_url: str | None | bool = False  # False = not looked up yet
        self.summary = Summary(self.consumer.name, self.queue_url, self.mode, dry_run=dry_run)
        self.seen: set[str] = set()
        self.held: dict[str, str] = {}  # MessageId -> latest receipt handle, released at the end

    # --- clients and queues ---------------------------------------------------------------
    def client(self, service: str):
        """A boto3 client made on first use; made under a lock, as boto3's default session
        is not thread-safe (clients themselves are)."""
        client = self._clients.get(service)
        if client is None:
            with self._lock:
                client = self._clients.get(service)
                if client is None:
                    client = self._clients[service] = _client(service, self.concurrency * 2 + 2)
        return client

    @property
    def sqs(self):
        return self.client("sqs")

    def _resolve(self, explicit: str | None, kind: str) -> str:
        try:
            url = resolve_queue_url(self.sqs, self.consumer.name, kind, explicit)
        except Exception as exc:
            raise ConfigError(f"cannot resolve the {kind} queue of {self.consumer.name}: {type(exc).__name__}: {exc}") from exc
        if url is None:
            raise ConfigError(
                f"no {kind} queue for {self.consumer.name}: {self.consumer.queue_name(kind)} does not exist; "
                f"pass --queue-url or set {self.consumer.key}_{'FAILURE' if kind == 'failures' else 'PARKING'}_QUEUE_URL"
            )
        return url

    @property
    def parking_url(self) -> str | None:
        if self._parking_url is False:
            try:
                self._parking_url = resolve_queue_url(self.sqs, self.consumer.name, "parking", self._parking_explicit)
            except Exception as exc:
                self.summary.note(f"parking queue lookup failed: {type(exc).__name__}: {exc}")
                self._parking_url = None
            self.summary.parking_queue_url = self._parking_url
        return self._parking_url  # type: ignore[return-value]

    @property
    def handle_record(self) -> Callable[[StreamRecord], Any]:
        if self._handle_record is None:
            self._handle_record = self.consumer.load()
        return self._handle_record

    # --- the run --------------------------------------------------------------------------
    def run(self) -> Summary:
        started = time.monotonic()
        if not self.dry_run:
            try:  # import the consumer (and fail on a broken one) before taking anything
                self.handle_record
            except Exception as exc:
                raise ConfigError(f"cannot load {self.consumer.module}.handle_record: {type(exc).__name__}: {exc}") from exc
        pool = ThreadPoolExecutor(self.concurrency) if self.concurrency > 1 else None
        # Receives run one round ahead, so the next batch is on its way while this one is
        # handled (a round's items still finish, and settle, before the next round's start:
        # per-key order holds across rounds too).
        receiver = ThreadPoolExecutor(self.concurrency + 1)
        ahead = None
        try:
            idle = 0
            while True:
                stop = self._stop_reason()
                if stop:
                    self.summary.stopped_by = stop
                    break
                messages = ahead.result() if ahead is not None else self._receive(receiver)
                ahead = None
                if not messages:
                    self.summary.stopped_by = "queue empty"
                    break
                fresh = self._take(messages)
                if not self._stop_reason():
                    ahead = receiver.submit(self._receive, receiver)
                if not fresh:
                    idle += 1
                    if idle >= MAX_IDLE_ROUNDS:
                        self.summary.stopped_by = "every message received was already tried in this run"
                        break
                    continue
                idle = 0
                if self.dry_run:
                    for item in fresh:
                        self._inspect(item)
                else:
                    self._process(fresh, pool)
                    self._settle(fresh, pool)
                if self.progress is not None:
                    self.progress(self.summary)
        finally:
            if ahead is not None:  # received ahead but never taken: made visible again below
                try:
                    for m in ahead.result():
                        if m["MessageId"] not in self.held:
                            self.held[m["MessageId"]] = m["ReceiptHandle"]
                            if m["MessageId"] not in self.seen:
                                self.summary.released += 1
                except Exception as exc:
                    self.summary.note(f"read-ahead receive failed: {type(exc).__name__}: {exc}"[:300])
            self._release_held()
            receiver.shutdown(wait=True)
            if pool is not None:
                pool.shutdown(wait=True)
            self.summary.duration_s = time.monotonic() - started
        return self.summary

    def _stop_reason(self) -> str | None:
        if self.max_messages is not None and self.summary.taken >= self.max_messages:
            return f"max {self.max_messages} messages taken"
        if self.deadline.expired():
            return "time budget used"
        return None

    def _receive(self, pool) -> list[dict]:
        want = None if self.max_messages is None else self.max_messages - self.summary.taken
        calls = self.receives_per_round
        if want is not None:
            calls = max(1, min(calls, -(-want // 10)))
        wait = self.wait_time_s
        remaining = self.deadline.remaining_s()
        if remaining != float("inf"):
            wait = max(0, min(wait, int(remaining) - 1))

        def one(_: int) -> list[dict]:
            return self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10 if want is None else max(1, min(10, want)),
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.visibility_timeout_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])

        batches = list(pool.map(one, range(calls))) if calls > 1 else [one(0)]
        return [m for b in batches for m in b]

    def _take(self, messages: list[dict]) -> list[Item]:
        """Split a receive into fresh items (taken now) and messages to leave alone."""
        fresh: list[Item] = []
        for m in messages:
            mid = m["MessageId"]
            run = (m.get("MessageAttributes") or {}).get(RUN_ATTRIBUTE, {}).get("StringValue")
            if mid in self.seen or run == self.run_id:
                self.held[mid] = m["ReceiptHandle"]
                self.summary.held += 1
                continue
            if self.max_messages is not None and self.summary.taken >= self.max_messages:
                self.held[mid] = m["ReceiptHandle"]  # over --max: not taken, made visible at the end
                self.summary.released += 1
                continue
            self.seen.add(mid)
            self.summary.taken += 1
            item = Item(message=m, order=len(fresh))
            self._classify(item)
            fresh.append(item)
        return fresh

    # --- reading a message ---------------------------------------------------------------
    def _classify(self, item: Item) -> None:
        """Parse the body: an envelope, an on-failure message, or something to park."""
        body = item.message.get("Body", "")
        sent = _iso_from_ms((item.message.get("Attributes") or {}).get("SentTimestamp"))
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            data = None
        if backstop.is_on_failure_message(data):
            item.body = data
            self.summary.seen_time(data.get("timestamp") or sent)
            try:
                item.info = backstop.parse_on_failure(data)
            except backstop.OnFailureMessageError as exc:
                return self._mark_park(item, f"unusable on-failure message: {exc.reason}")
            fn = item.info.function_name
            if fn and not fn.endswith(self.consumer.name):
                return self._mark_park(item, f"on-failure message from function {fn}, not consumer {self.consumer.name}")
            item.group = f"shard:{item.info.shard_id}"
            item.error_type = "DDBStreamBatchInfo"
            return None
        try:
            env = parse_envelope(body)
        except EnvelopeError as exc:
            self.summary.seen_time(sent)
            return self._mark_park(item, f"malformed envelope: {exc.reason}")
        item.envelope, item.body = env, env.body
        self.summary.seen_time(env.captured_at or sent)
        item.error_type = (env.error or {}).get("type") or "Unknown"
        if env.consumer not in CONSUMERS:
            return self._mark_park(item, f"unknown consumer {env.consumer!r} in envelope")
        if env.consumer != self.consumer.name:
            return self._mark_park(
                item, f"envelope for consumer {env.consumer!r} found in {self.consumer.name}'s queue"
            )
        item.group = key_of(env.record)
        return None

    def _mark_park(self, item: Item, reason: str) -> None:
        item.outcome, item.park_reason = "park", reason

    def _inspect(self, item: Item) -> None:
        """Dry run: count, never change. The message stays invisible until the run ends."""
        self.summary.by_error_type[item.error_type or "malformed"] += 1
        if item.outcome == "park":
            self.summary.park_reasons[_reason_kind(item.park_reason)] += 1
        self.held[item.message["MessageId"]] = item.message["ReceiptHandle"]

    # --- running records ----------------------------------------------------------------
    def _process(self, items: list[Item], pool) -> None:
        groups: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            if item.outcome == "pending":
                groups[item.group].append(item)
        tasks = []
        for group in groups.values():
            group.sort(key=lambda it: (_seq_int(it.envelope.record) if it.envelope else 0, it.order))
            tasks.append(group)
        if pool is None or len(tasks) < 2:
            for group in tasks:
                self._run_group(group)
        else:
            list(pool.map(self._run_group, tasks))

    def _run_group(self, group: list[Item]) -> None:
        """Items of one key, in stream order, one after the other."""
        for item in group:
            if self.deadline.expired():
                item.outcome = "skip"
                continue
            try:
                if item.info is not None:
                    self._run_on_failure(item)
                else:
                    self._run_envelope(item)
            except ParkError as exc:
                self._mark_park(item, exc.reason)
            except Exception as exc:
                item.outcome, item.error = "failed", describe_error(exc)

    def _call(self, record: dict) -> None:
        try:
            view = StreamRecord(record)
        except MalformedRecordError as exc:
            raise ParkError(f"not a valid stream record: {exc}") from None
        call_with_retries(
            self.handle_record,
            view,
            deadline=self.deadline,
            max_retries=self.max_retries,
            base_delay_s=self.retry_base_delay_s,
        )

    def _in_mode(self, record: dict, mode: str) -> dict:
        if mode == "replay":
            return record
        if not self.users_table:
            raise ParkError("latest mode needs USERS_TABLE to re-read the item")
        try:
            return build_latest(self.client("dynamodb"), self.users_table, record)
        except ValueError as exc:  # no keys
            raise ParkError(str(exc)) from None

    def _run_envelope(self, item: Item) -> None:
        env = item.envelope
        record = env.record
        if env.payload_ref:
            record = self._fetch_payload(env.payload_ref)
        self._call(self._in_mode(record, self.mode))
        item.outcome = "ok"

    def _fetch_payload(self, ref: dict) -> dict:
        try:
            obj = self.client("s3").get_object(Bucket=ref["bucket"], Key=ref["key"])
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "NoSuchBucket", "404"):
                raise ParkError(f"claim-checked record s3://{ref['bucket']}/{ref['key']} is missing") from None
            raise
        try:
            record = json.loads(obj["Body"].read())
        except ValueError as exc:
            raise ParkError(f"claim-checked record s3://{ref['bucket']}/{ref['key']} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ParkError(f"claim-checked record s3://{ref['bucket']}/{ref['key']} is not an object")
        return record

    def _run_on_failure(self, item: Item) -> None:
        """Read the batch back from the stream and run each record; failures become envelopes."""
        info = item.info
        res = backstop.resolve(info, self.client("dynamodbstreams"))
        with self._lock:  # groups of different shards run on different threads
            self.summary.stream_records += len(res.records)
        mode = "latest" if res.expired else self.mode
        for record in sorted(res.records, key=_seq_int):
            try:
                self._call(self._in_mode(record, mode))
            except Exception as exc:
                error = (
                    {"type": "ParkError", "message": exc.reason, "traceback": ""}
                    if isinstance(exc, ParkError)
                    else describe_error(exc)
                )
                item.follow_ups.append(
                    build_envelope(
                        consumer=self.consumer.name,
                        record=record,
                        error=error,
                        attempts=2,  # the stream's retries, then this run
                        function_name=info.function_name,
                        request_id=None,
                    )
                )
        if res.reason:
            raise ParkError(res.reason)
        item.outcome = "failed" if item.follow_ups else "ok"
        if item.follow_ups:
            types = {e["error"]["type"] for e in item.follow_ups}
            item.error = {
                "type": types.pop() if len(types) == 1 else "Mixed",
                "message": f"{len(item.follow_ups)} of {len(res.records)} stream records failed; captured as envelopes",
                "traceback": "",
            }

    # --- settling a round ------------------------------------------------------------------
    def _settle(self, items: list[Item], pool) -> None:
        """Park, re-send, then delete exactly what was handled, parked or re-sent."""
        s = self.summary
        deletable: list[Item] = []
        to_park: list[Item] = []
        to_resend: list[Item] = []
        for item in items:
            if item.outcome == "skip":  # not started: deadline
                s.taken -= 1
                s.released += 1
                self.seen.discard(item.message["MessageId"])
                self.held[item.message["MessageId"]] = item.message["ReceiptHandle"]
            elif item.outcome == "ok":
                s.succeeded += 1
                deletable.append(item)
            elif item.outcome == "park":
                to_park.append(item)
            elif item.outcome == "failed":
                attempts = (item.envelope.attempts if item.envelope else 1) + 1
                if item.envelope is not None and attempts >= self.max_attempts:
                    item.park_reason = (
                        f"gave up after {attempts} attempts: {item.error['type']}: {item.error['message']}"[:500]
                    )
                    to_park.append(item)
                else:
                    to_resend.append(item)

        with_copies = [it for it in to_park if it.follow_ups]
        if with_copies:  # an expired on-failure batch: its failed survivors go back first
            bad = self._send_copies(with_copies)
            for item in with_copies:
                if id(item) in bad:
                    to_park.remove(item)
                    self._leave(item, "ResendFailed", "could not capture failed stream records")
        for item in self._park(to_park):
            deletable.append(item)
        for item in self._resend(to_resend):
            deletable.append(item)
        self._delete(deletable, pool)

    def _park(self, items: list[Item]) -> list[Item]:
        """Send to the parking queue; returns the items now safely parked."""
        if not items:
            return []
        s = self.summary
        url = self.parking_url
        if not url:
            for item in items:
                self._leave(item, "NoParkingQueue", f"cannot park ({item.park_reason}): no parking queue")
            s.note(f"no parking queue {self.consumer.queue_name('parking')}: messages to park stay in the queue")
            return []
        entries, by_id = [], {}
        for i, item in enumerate(items):
            reason = item.park_reason or "unknown"
            if item.envelope is not None:
                body = dict(item.envelope.body)
                if item.error:
                    body["error"] = item.error
                    body["attempts"] = item.envelope.attempts + 1
                body["parked"] = {"reason": reason, "at": now_iso(), "fromQueue": self.queue_url, "runId": self.run_id}
                text = dumps(body)
            else:
                text = item.message.get("Body", "")  # malformed or on-failure: kept byte for byte
            attrs = message_attributes(self.consumer.name, _kind(item))
            attrs[PARK_REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": reason[:MAX_ATTRIBUTE_CHARS]}
            entries.append({"Id": str(i), "MessageBody": text, "MessageAttributes": attrs})
            by_id[str(i)] = item
        reasons: dict[str, str] = {}
        failed = send_batch(
            self.sqs, url, entries, max_batch_bytes=MAX_MESSAGE_BYTES,
            on_error=lambda m, r: reasons.__setitem__(m["Id"], r),
        )
        failed_ids = {m["Id"] for m in failed}
        parked = []
        for entry in entries:
            item = by_id[entry["Id"]]
            if entry["Id"] in failed_ids:
                self._leave(item, "ParkFailed", f"could not park: {reasons.get(entry['Id'])}")
            else:
                s.parked += 1
                s.park_reasons[_reason_kind(item.park_reason)] += 1
                s.by_error_type[_kind(item)] += 1
                self.log.warning("parked", message_id=item.message["MessageId"], reason=item.park_reason)
                parked.append(item)
        return parked

    def _copies(self, item: Item) -> list[tuple[str, str]]:
        """(body, error type) of what goes back to the failure queue for a failed item."""
        if item.envelope is not None:
            body = {**item.envelope.body, "attempts": item.envelope.attempts + 1, "error": item.error}
            return [(dumps(body), item.error["type"])]
        return [(dumps(e), e["error"]["type"]) for e in item.follow_ups]

    def _send_copies(self, items: list[Item]) -> set[int]:
        """Send every item's copies (tagged with this run); returns ``id()`` of items not fully sent."""
        entries: list[dict] = []
        owner: dict[str, Item] = {}
        for i, item in enumerate(items):
            for j, (text, err_type) in enumerate(self._copies(item)):
                attrs = message_attributes(self.consumer.name, err_type)
                attrs[RUN_ATTRIBUTE] = {"DataType": "String", "StringValue": self.run_id}
                entries.append({"Id": f"{i}-{j}", "MessageBody": text, "MessageAttributes": attrs})
                owner[f"{i}-{j}"] = item
        if not entries:
            return set()
        reasons: dict[str, str] = {}
        failed = send_batch(
            self.sqs, self.queue_url, entries, max_batch_bytes=MAX_MESSAGE_BYTES,
            on_error=lambda m, r: reasons.__setitem__(m["Id"], r),
        )
        for m in failed:
            self.summary.note(f"re-send failed, original left in the queue: {reasons.get(m['Id'], '')}"[:300])
        # An on-failure message whose copies went in only in part stays too: rerunning its
        # records is safe (side effects are guarded by (consumer, eventID)).
        return {id(owner[m["Id"]]) for m in failed}

    def _resend(self, items: list[Item]) -> list[Item]:
        """Re-send with ``attempts + 1`` and the latest error; returns the items whose copy is in."""
        if not items:
            return []
        s = self.summary
        bad = self._send_copies(items)
        done = []
        for item in items:
            s.still_failing += 1
            s.by_error_type[(item.error or {}).get("type", "Unknown")] += 1
            if id(item) in bad:
                self.held[item.message["MessageId"]] = item.message["ReceiptHandle"]
            else:
                s.resent += 1
                done.append(item)
        return done

    def _leave(self, item: Item, err_type: str, why: str) -> None:
        """The message stays in the queue as it is (counted as still failing)."""
        self.summary.still_failing += 1
        self.summary.by_error_type[err_type] += 1
        self.summary.note(why[:300])
        self.held[item.message["MessageId"]] = item.message["ReceiptHandle"]

    def _delete(self, items: list[Item], pool) -> None:
        chunks = [items[i : i + 10] for i in range(0, len(items), 10)]

        def one(chunk: list[Item]) -> int:
            entries = [{"Id": str(i), "ReceiptHandle": it.message["ReceiptHandle"]} for i, it in enumerate(chunk)]
            try:
                resp = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                self.log.error("delete failed; messages will reappear (handled ones are idempotent)", error=str(exc))
                return len(chunk)
            failed = resp.get("Failed") or []
            answered = {e.get("Id") for e in (resp.get("Successful") or [])} | {f.get("Id") for f in failed}
            for f in failed:
                self.log.error("delete failed for one message", code=f.get("Code"), error=f.get("Message"))
            return len(failed) + sum(1 for e in entries if e["Id"] not in answered)

        if pool is not None and len(chunks) > 1:
            self.summary.delete_failures += sum(pool.map(one, chunks))
        else:
            self.summary.delete_failures += sum(one(c) for c in chunks)

    def _release_held(self) -> None:
        """Make every message left alone in this run visible again, so the next run sees it now."""
        handles = list(self.held.values())
        self.held.clear()
        for i in range(0, len(handles), 10):
            entries = [{"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": 0} for j, h in enumerate(handles[i : i + 10])]
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:  # they reappear after the visibility timeout anyway
                self.summary.note(f"could not release messages early: {type(exc).__name__}")


def _kind(item: Item) -> str:
    """The error type a message is counted (and tagged) under: its latest error, else its
    envelope's, else ``malformed``."""
    return (item.error or {}).get("type") or item.error_type or "malformed"


def _reason_kind(reason: str | None) -> str:
    """Group park reasons for the summary (the first clause, without ids)."""
    if not reason:
        return "unknown"
    head = reason.split(":")[0]
    return head[:80]


def drain(
    consumer_name: str,
    *,
    queue_url: str | None = None,
    max_messages: int | None = None,
    mode: str | None = None,
    dry_run: bool = False,
    concurrency: int = 1,
    time_budget_s: float | None = None,
    handle_record: Callable[[StreamRecord], Any] | None = None,
    progress: Callable[[Summary], None] | None = None,
    deadline: Deadline | None = None,
    **options: Any,
) -> Summary:
    """Drain ``consumer_name``'s failure queue through its ``handle_record``; always returns.

    ``handle_record=None`` loads the consumer's own; ``mode=None`` uses the consumer's
    default; ``deadline`` (a ``streamkit.deadline.Deadline``) wins over ``time_budget_s``.
    Further ``options``: ``parking_queue_url``, ``max_attempts`` (5), ``wait_time_s`` (2),
    ``visibility_timeout_s`` (120), ``users_table`` (USERS_TABLE), ``max_retries`` (2),
    ``retry_base_delay_s``, ``receives_per_round`` (ceil(concurrency / 2): the window, in
    batches of 10, within which records of one key run in stream order), and boto3 clients ``sqs``, ``s3``, ``dynamodb``, ``streams``.
    Raises ``streamkit.errors.ConfigError`` for bad usage or configuration (exit code 2).
    """
    if deadline is None:
        deadline = Deadline.from_seconds(time_budget_s)
    return Drainer(
        consumer_name,
        queue_url=queue_url,
        max_messages=max_messages,
        mode=mode,
        dry_run=dry_run,
        concurrency=concurrency,
        deadline=deadline,
        handle_record=handle_record,
        progress=progress,
        **options,
    ).run()
