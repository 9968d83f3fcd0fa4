"""The one processing loop shared by every failure policy.

For each record: check the deadline, run ``handle_record`` (retrying transient errors within
the deadline), and on a failure that stands ask the policy for a ``Decision``, which ``Batch``
books. At the end: the policy settles what it holds, ``Batch.close`` proves that every record
is accounted for, and the response names the reported records.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from . import deadline as _deadline
from . import retry as _retry
from .batch import Batch, BatchResult, ConservationError, Decision, Failure, Policy
from .circuit import CIRCUIT_OPEN_REPORT, CircuitOpenError
from .deadline import Deadline
from .errors import MalformedEventError, is_transient
from .log import LazyLogger
from .record import StreamRecord, stream_record
from .retry import call_with_retries


@dataclass(frozen=True)
class LoopSettings:
    """The loop's knobs; defaults and bounds come from the declarations in ``retry``/``deadline``."""

    SETTINGS: ClassVar[tuple] = _retry.SETTINGS + _deadline.SETTINGS

    max_retries: int = _retry.DEFAULT_MAX_RETRIES
    base_delay_s: float = _retry.DEFAULT_BASE_DELAY_S
    max_delay_s: float = _retry.DEFAULT_MAX_DELAY_S
    deadline_margin_ms: int = _deadline.DEFAULT_MARGIN_MS
    slowest_call_ms: int = 0  # the consumer's slowest sink call, from its client timeouts

    @property
    def margin_ms(self) -> int:
        """Stop this long before the deadline: wrap-up time plus one sink call at its timeout,
        so a record (or a retry) is started only when even a hanging sink lets it end in time."""
        return self.deadline_margin_ms + self.slowest_call_ms

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> LoopSettings:
        """From ``settings.load(LoopSettings.SETTINGS, ...)``'s result."""
        retry = _retry.RetryConfig.from_values(values)
        return cls(retry.max_retries, retry.base_delay_s, retry.max_delay_s, values["DEADLINE_MARGIN_MS"])


class BatchLoop:
    """Runs ``handle_record`` over a Lambda event under one failure policy."""

    def __init__(
        self,
        consumer: str,
        handle_record: Callable[[StreamRecord], Any],
        policy: Policy,
        settings: LoopSettings = LoopSettings(),
        metrics: Any = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        breaker: Any = None,
    ):
        import time

        self.consumer = consumer
        self.handle_record = handle_record
        self.policy = policy
        self.settings = settings
        self.metrics = metrics
        self.sleep = sleep or time.sleep
        self.clock = clock  # the deadline's (None: time.monotonic); simulated in the chaos suite
        self.breaker = breaker  # streamkit.circuit.CircuitBreaker, or None
        self._call = breaker.wrap(handle_record) if breaker is not None else handle_record
        # while the sink's circuit is open: wait for the probe (dlq-capture, hard-fail) or not (soft-fail)
        self._holds_shard = breaker is not None and getattr(policy, "waits_for_probe", True)
        self._last: Batch | None = None  # the last batch, released: counts only

    def _retry(self, record: StreamRecord, first_error: Exception, batch: Batch, deadline: Deadline) -> None:
        """After a first failure: bounded retries of transient errors, within the deadline;
        while the sink's circuit is open, waiting for the next probe (when the policy holds the
        shard). Raises when the failure stands."""
        error: Exception = first_error
        while True:
            if isinstance(error, CircuitOpenError):
                waited = self._await_circuit(record, error, batch, deadline)
                if waited is None:
                    return
                if isinstance(waited, CircuitOpenError):
                    raise waited
                error = waited
            try:
                return self._retry_transient(record, error, batch, deadline)
            except CircuitOpenError as opened:  # the retries opened it: hold on, or give up
                error = opened

    def _await_circuit(self, record: StreamRecord, error: CircuitOpenError, batch: Batch,
                       deadline: Deadline) -> Exception | None:
        """Hold the shard while the circuit is open: sleep until the next probe (or the next
        read of the shared state) while the deadline allows one more call, and try again.
        ``None`` when the record went through; else the error that stands (a
        ``CircuitOpenError`` when the deadline came first). Without a deadline (no Lambda
        context) it does not wait at all."""
        if not self._holds_shard or deadline.end == float("inf"):
            return error
        current: Exception = error
        first = True
        while isinstance(current, CircuitOpenError) and deadline.allows(current.retry_in):
            if first:
                batch.log.warning("sink circuit open; holding the shard until the next probe",
                                  sequence_number=record.sequence_number, error=str(current))
                first = False
            self.sleep(current.retry_in)
            try:
                self._call(record)
                return None
            except Exception as exc:
                current = exc
        return current

    def _retry_transient(self, record: StreamRecord, first_error: Exception, batch: Batch,
                         deadline: Deadline) -> None:
        """Bounded retries of transient errors (jittered backoff), never past the deadline."""

        def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
            batch.note_retry()
            batch.log.warning(
                "transient failure; retrying",
                sequence_number=record.sequence_number,
                attempt=attempt,
                delay_s=round(delay, 3),
                error_type=type(exc).__name__,
                error=str(exc),
            )

        s = self.settings
        call_with_retries(
            self._call,
            record,
            deadline=deadline,
            max_retries=s.max_retries,
            base_delay_s=s.base_delay_s,
            max_delay_s=s.max_delay_s,
            on_retry=on_retry,
            sleep=self.sleep,
            first_error=first_error,
        )

    def run(self, event: Any, context: Any = None) -> dict:
        """Process one Lambda event; returns ``{"batchItemFailures": [...]}``.

        Nothing of the event outlives the call: ``last_batch`` keeps counts, and the batch lets
        go of its records and of its failures' tracebacks before returning (else the event
        would be freed inside the next invocation, or by the garbage collector)."""
        records = event.get("Records") if isinstance(event, dict) else None
        if not isinstance(records, list):
            raise MalformedEventError(
                f"{self.consumer}: event has no 'Records' list; this function expects a DynamoDB "
                f"Streams or Kinesis event (got {type(event).__name__}"
                f"{' with keys ' + str(sorted(map(str, event))[:5]) if isinstance(event, dict) else ''})"
            )
        request_id = getattr(context, "aws_request_id", None)
        batch = Batch(
            records,
            LazyLogger(consumer=self.consumer, policy=self.policy.name, aws_request_id=request_id),
            request_id,
        )
        try:
            return self._run(batch, records, Deadline(context, self.settings.margin_ms, self.clock))
        finally:
            batch.release()
            self._last = batch

    @property
    def last_batch(self) -> BatchResult | None:
        """How the last batch ended, in counts (for tests and the local runtime): never its records."""
        return None if self._last is None else self._last.result()

    def forget_last_batch(self) -> None:
        """The local runtime, before an invocation: ``last_batch`` then never reports a previous one."""
        self._last = None

    def _run(self, batch: Batch, records: list, deadline: Deadline) -> dict:
        policy = self.policy
        handle = self._call
        request_id = batch.request_id
        # The context was asked once, when the Deadline was made: per record, the clock against its end.
        clock, end = deadline.clock(), deadline.end
        attempted = len(records)
        retries = self.settings.max_retries
        holds = self._holds_shard  # an open circuit: wait for the probe rather than give up at once
        refused = 0  # records the open circuit kept from the sink (decided as CircuitOpenError)
        refused_rest = False  # ...and the policy stopped on one: the rest of the batch is held too

        for index, raw in enumerate(records):
            if clock() >= end:
                attempted = index
                batch.stop(index, "deadline")
                break
            try:
                record = stream_record(raw)
                try:
                    handle(record)  # the hot path: no retry machinery unless something fails
                except Exception as first:
                    if not (retries and is_transient(first)) and not (holds and isinstance(first, CircuitOpenError)):
                        raise  # a permanent error (the common failure) goes straight to the policy
                    self._retry(record, first, batch, deadline)
            except Exception as exc:
                failure = batch.failure(index, exc)
                circuit_open = isinstance(exc, CircuitOpenError)
                refused += circuit_open
                stop = batch.apply(failure, self._decide(failure))
                if not stop and batch.held:
                    stop = batch.settle(policy.settle(batch.held, final=False, request_id=request_id))
                if stop:
                    refused_rest = circuit_open
                    attempted = index + 1
                    batch.stop(index + 1, "policy")
                    break

        if batch.stopped_by == "deadline" and attempted == 0 and records:
            batch.log.error(
                "no time for a single record: the function's timeout is shorter than the deadline margin "
                "(DEADLINE_MARGIN_MS plus the sink's slowest call); raise the function's timeout or lower "
                "the sink's client timeout",
                margin_ms=self.settings.margin_ms,
            )
        if batch.stopped_by == "deadline":
            batch.log.warning(
                "deadline near; reporting the rest of the batch for retry",
                unprocessed=len(records) - attempted,
                remaining_ms=int((deadline.remaining_s() + deadline.margin_s) * 1000),
            )
        if batch.held:
            batch.settle(policy.settle(batch.held, final=True, request_id=request_id))
        try:
            batch.close(attempted, policy.name)
        except ConservationError as exc:
            batch.log.error("records unaccounted for; failing the whole batch so Lambda retries it", error=str(exc))
            raise
        response = self._response(batch)
        after = getattr(policy, "after_batch", None)  # optional: a custom policy may not have it
        if after is not None:
            after(batch)
        if self.metrics is not None:
            self.metrics.publish(batch.counts())
        if refused and self.breaker is not None:
            self.breaker.count_refused(refused + (len(records) - attempted if refused_rest else 0))
        return response

    def _decide(self, failure: Failure) -> Decision:
        """The policy's decision; a record the open circuit kept from the sink goes to its
        ``on_circuit_open`` (by default: report it and the rest of the batch)."""
        if isinstance(failure.error, CircuitOpenError):
            on_open = getattr(self.policy, "on_circuit_open", None)
            return on_open(failure) if on_open is not None else Decision.report(CIRCUIT_OPEN_REPORT)
        return self.policy.on_failure(failure)

    def _response(self, batch: Batch) -> dict:
        """``batchItemFailures``: every reported record, in stream order (contract 3: the failed
        record and what follows it, never anything before it). Lambda checkpoints before the
        lowest one and delivers everything from it again. A reported record with no sequence
        number cannot be named; that is safe only when a lower reported record is named, else
        the whole batch fails instead, so nothing is skipped."""
        reported = batch.reported_in_order()
        if not reported:
            return {"batchItemFailures": []}
        failures = []
        for index in reported:
            seq = batch.sequence_number(index)
            if seq is not None:
                failures.append({"itemIdentifier": seq})
            elif not failures:
                raise MalformedEventError(
                    f"{self.consumer}: record #{index} of the batch failed and has no "
                    "sequence number (dynamodb.SequenceNumber / kinesis.sequenceNumber) to report it by; "
                    "failing the whole batch so Lambda retries it"
                )
        return {"batchItemFailures": failures}
