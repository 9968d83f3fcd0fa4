"""Drain a consumer's failure queue through that consumer's own ``handle_record``.

Public API (stable; the CLI, the reprocess Lambda and the operator API call it):

    from reprocess.worker import drain
    summary = drain("search-indexer", max_messages=100, mode="latest", concurrency=8)
    summary.to_dict()   # taken, succeeded, still_failing, parked, by_error_type, oldest, newest,
                        # exit_code, stopped_by, ...

The loop, top to bottom: receive a round (the next one is read ahead), take what this run
has not tried yet, classify each message (``classify``), run its records (``runner``),
settle each message (``settle``: park, re-send, delete, or leave), report progress. Held
messages are made visible again at the end.

It always terminates: at an empty queue, after ``max_messages``, at the time budget, when
``should_stop()`` gives a reason (an operator cancelled: checked before every message, and
what was received but not started is made visible again), or
when a receive returns only messages already tried in this run (re-sent copies carry the
run id in a message attribute and are left alone until the run ends). An SQS call of its
own that fails past botocore's retries (receive, send, delete) ends the run too, cleanly:
what was settled stays settled, every message it still holds is made visible again, and the
summary says ``aborted`` (exit status 1).
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamkit.awsclient import ClientCache
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError
from streamkit.ledger import Ledger, ledger_settings
from streamkit.log import LazyLogger
from streamkit.record import StreamRecord

from .classify import classify
from .heartbeat import VisibilityKeeper
from .item import Holds, Item
from .options import DEFAULT_MAX_ATTEMPTS, OPTION_NAMES, DrainOptions
from .receive import Receiver
from .runner import RecordRunner
from .settle import Settler
from .summary import Summary

__all__ = ["drain", "Drainer", "DrainOptions", "DEFAULT_MAX_ATTEMPTS"]

DRY_RUN_VISIBILITY_S = 30  # a dry run hides what it reads only briefly
MAX_IDLE_ROUNDS = 2  # rounds in a row that bring nothing new before "everything was tried"
CLIENT_NAMES = {"sqs": "sqs", "s3": "s3", "dynamodb": "dynamodb", "streams": "dynamodbstreams", "kinesis": "kinesis"}


class Drainer:
    """One run over one queue: its clients, its parts, and the loop. Use ``drain()``."""

    def __init__(self, options: DrainOptions, *, handle_record: Callable[[StreamRecord], Any] | None = None,
                 progress: Callable[[Summary], None] | None = None, deadline: Deadline | None = None,
                 clients: dict[str, Any] | None = None, should_stop: Callable[[], str | None] | None = None):
        self.options = options = options.resolved()
        self.consumer = options.spec
        self.mode = options.effective_mode
        if options.needs_users_table and not options.users_table:
            raise ConfigError("latest mode re-reads items from the users table: set USERS_TABLE (or use --mode replay)")
        self.dry_run = options.dry_run
        self.should_stop = should_stop
        self.deadline: Any = deadline or Deadline.from_seconds(options.time_budget_s)
        if should_stop is not None:
            self.deadline = StopOrDeadline(self.deadline, should_stop)
        self._handle_record = handle_record
        self.progress = progress
        self.run_id = uuid.uuid4().hex[:16]
        self.log = LazyLogger(component="reprocess", consumer=self.consumer.name, run_id=self.run_id)
        self.clients = ClientCache(clients, max_attempts=4, connect_timeout=3, read_timeout=30,
                                   pool=options.concurrency * 2 + 2)
        self.sqs = self.clients.get("sqs")
        self.queue_url = self._failure_queue_url()
        self.summary = Summary(self.consumer.name, self.queue_url, self.mode, dry_run=self.dry_run)
        self.holds = Holds()
        # A dry run hides what it reads only briefly (and makes it visible again at the end).
        visibility = options.visibility_timeout_s
        if self.dry_run:
            visibility = min(visibility, DRY_RUN_VISIBILITY_S)
        # a dry run's brief hide is not extended: it changes nothing, a second run may see them
        self.keeper = VisibilityKeeper(self.sqs, self.queue_url, 0 if self.dry_run else visibility, self.summary)
        self.receiver = Receiver(self.sqs, self.queue_url, options, deadline=self.deadline,
                                 visibility_timeout_s=visibility, run_id=self.run_id, summary=self.summary,
                                 holds=self.holds, keeper=self.keeper)
        self.ledger = self._ledger()
        self.settler = Settler(self.sqs, self.queue_url, consumer=self.consumer.name, max_attempts=options.max_attempts,
                               run_id=self.run_id, parking_url=self._parking_queue_url,
                               parking_name=self.consumer.queue_name("parking"), summary=self.summary,
                               holds=self.holds, log=self.log, ledger=self.ledger,
                               settled_by=f"job {options.job_id}" if options.job_id else None,
                               keeper=self.keeper)
        self._parking_url: str | None = None
        self._parking_looked_up = False  # on first use: most runs park nothing

    def _ledger(self) -> Ledger | None:
        """The failure ledger, when there is one: every disposition is recorded there."""
        if self.dry_run or not self.options.ledger_table:
            return None
        _, days = ledger_settings()
        return Ledger(self.options.ledger_table, self.consumer.name, retention_days=days,
                      client_factory=lambda: self.clients.get("dynamodb"))

    # ---- queues ------------------------------------------------------------------------------
    def _failure_queue_url(self) -> str:
        consumer = self.consumer
        try:
            url = self.options.queue_url or consumer.resolve_queue_url(self.sqs, "failures")
        except Exception as exc:
            raise ConfigError(f"cannot resolve the failures queue of {consumer.name}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if url is None:
            raise ConfigError(f"no failures queue for {consumer.name}: {consumer.queue_name('failures')} does not "
                              f"exist; pass --queue-url or set {consumer.key}_FAILURE_QUEUE_URL")
        return url

    def _parking_queue_url(self) -> str | None:
        if not self._parking_looked_up:
            self._parking_looked_up = True
            try:
                self._parking_url = (self.options.parking_queue_url
                                     or self.consumer.resolve_queue_url(self.sqs, "parking"))
            except Exception as exc:
                self.summary.note(f"parking queue lookup failed: {type(exc).__name__}: {exc}")
            self.summary.parking_queue_url = self._parking_url
        return self._parking_url

    @property
    def handle_record(self) -> Callable[[StreamRecord], Any]:
        if self._handle_record is None:
            self._handle_record = self.consumer.load()
        return self._handle_record

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> Summary:
        started = time.monotonic()
        runner = None if self.dry_run else self._runner()
        concurrency = self.options.concurrency
        pool = ThreadPoolExecutor(concurrency) if concurrency > 1 else None
        try:
            idle = 0
            while not self._stopped():
                try:
                    messages = self.receiver.next_round()
                except Exception as exc:
                    self._abort(f"ReceiveMessage failed: {type(exc).__name__}: {exc}"[:300])
                    break
                if not messages:
                    self.summary.stopped_by = "queue empty"
                    break
                fresh = self.receiver.take(messages)
                if not self._stop_reason():
                    self.receiver.read_ahead()
                if not fresh:
                    idle += 1
                    if idle >= MAX_IDLE_ROUNDS:
                        self.summary.stopped_by = "every message received was already tried in this run"
                        break
                    continue
                idle = 0
                items = [Item(m, classify(m, self.consumer.name), order=i) for i, m in enumerate(fresh)]
                for item in items:
                    self.summary.seen_time(item.what.seen_at)
                if runner is None:
                    self.settler.inspect(items)
                    self.keeper.untrack(item.message_id for item in items)  # held to the end
                else:
                    runner.run_round(items, pool)
                    self.settler.settle(items, pool)  # untracks each message once SQS has its disposition
                if self.progress is not None:
                    self.progress(self.summary)
                if runner is not None and runner.config_error:
                    self._stop_on_config_error(runner.config_error)
                    break
                if self.settler.call_error:
                    self._abort(self.settler.call_error)
                    break
        finally:
            self.receiver.close()
            self.settler.finish()  # the last round's deletes
            self.keeper.stop()
            if self.settler.call_error and not self.summary.aborted:  # a delete behind the loop failed
                self._abort(self.settler.call_error)
            self.settler.release()
            if pool is not None:
                pool.shutdown(wait=True)
            self.summary.duration_s = time.monotonic() - started
        return self.summary

    def _stop_on_config_error(self, error: str) -> None:
        """``handle_record`` raised ``ConfigError``: every record would fail the same way, so no
        message is re-sent (which would spend its attempts toward parking): the run stops."""
        self.summary.config_error = error[:1000]
        self.summary.stopped_by = ("configuration error: fix it and run again (the messages not handled were "
                                   "made visible again, their attempts unchanged)")
        self.log.error("reprocess run stopped: handle_record raised ConfigError", error=error[:500])

    def _abort(self, why: str) -> None:
        """End the run on an SQS failure of our own; the ``finally`` of ``run`` releases what is held."""
        self.summary.aborted = why
        self.summary.stopped_by = f"aborted: {why}"
        self.log.error("reprocess run aborted", reason=why)

    def _runner(self) -> RecordRunner:
        try:  # import the consumer (and fail on a broken one) before taking anything
            handle_record = self.handle_record
        except Exception as exc:
            raise ConfigError(f"cannot load {self.consumer.module}.handle_record: {type(exc).__name__}: {exc}") from exc
        return RecordRunner(self.options, self.clients, handle_record, self.deadline)

    def _stop_reason(self) -> str | None:
        stop = self.should_stop() if self.should_stop is not None else None
        if stop:
            return stop
        limit = self.options.max_messages
        if limit is not None and self.summary.taken >= limit:
            return f"max {limit} messages taken"
        if self.deadline.expired():
            return "time budget used"
        return None

    def _stopped(self) -> bool:
        stop = self._stop_reason()
        if stop:
            self.summary.stopped_by = stop
        return stop is not None


class StopOrDeadline:
    """The run's deadline, which also passes the moment ``should_stop()`` gives a reason (an
    operator cancelled): the runner then starts no further message (those are made visible
    again and not counted as taken) and the loop ends with that reason as ``stopped_by``."""

    def __init__(self, deadline: Deadline, should_stop: Callable[[], str | None]):
        self.deadline, self.should_stop = deadline, should_stop

    @property
    def margin_s(self) -> float:
        return self.deadline.margin_s

    def remaining_s(self) -> float:
        return 0.0 if self.should_stop() else self.deadline.remaining_s()

    def expired(self) -> bool:
        return self.remaining_s() <= 0

    def allows(self, seconds: float) -> bool:
        return self.remaining_s() > seconds


def drain(
    consumer_name: str | None = None,
    *,
    options: DrainOptions | None = None,
    handle_record: Callable[[StreamRecord], Any] | None = None,
    progress: Callable[[Summary], None] | None = None,
    deadline: Deadline | None = None,
    should_stop: Callable[[], str | None] | None = None,
    **fields: Any,
) -> Summary:
    """Drain ``consumer_name``'s failure queue through its ``handle_record``; always returns.

    Give either ``options`` (a ``DrainOptions``) or the consumer name and its fields as
    keywords (``max_messages``, ``mode``, ``dry_run``, ``concurrency``, ``time_budget_s``,
    ``queue_url``, ``parking_queue_url``, ``max_attempts``, ``wait_time_s``,
    ``visibility_timeout_s``, ``receives_per_round``, ``users_table``, ``max_retries``,
    ``retry_base_delay_s``, ``ledger_table``, ``job_id``), plus boto3 clients ``sqs``, ``s3``,
    ``dynamodb``, ``streams`` (DynamoDB Streams), ``kinesis``. ``handle_record=None`` loads the
    consumer's own; ``deadline`` (a ``Deadline``) wins over ``time_budget_s``; ``should_stop()``
    returning a reason (words, e.g. "cancelled by ...") stops the run before the next message.
    Raises ``streamkit.errors.ConfigError`` for bad usage or
    configuration (exit code 2).
    """
    clients = {CLIENT_NAMES[k]: fields.pop(k) for k in list(fields) if k in CLIENT_NAMES}
    unknown = sorted(set(fields) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"drain() got unknown option(s): {', '.join(unknown)}")
    if consumer_name is not None:
        fields["consumer"] = consumer_name
    options = DrainOptions(**fields) if options is None else dataclasses.replace(options, **fields)
    return Drainer(options, handle_record=handle_record, progress=progress, deadline=deadline, clients=clients,
                   should_stop=should_stop).run()
