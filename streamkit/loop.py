"""The one processing loop shared by every failure policy."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from . import deadline as _deadline
from . import retry as _retry
from .capture import PendingCapture
from .deadline import Deadline
from .errors import MalformedEventError
from .log import LazyLogger
from .policies import STOP, FailurePolicy
from .record import StreamRecord
from .retry import call_with_retries


@dataclass(frozen=True)
class LoopSettings:
    """The loop's knobs; defaults and bounds come from the declarations in ``retry``/``deadline``."""

    SETTINGS: ClassVar[tuple] = _retry.SETTINGS + _deadline.SETTINGS

    max_retries: int = _retry.DEFAULT_MAX_RETRIES
    base_delay_s: float = _retry.DEFAULT_BASE_DELAY_S
    max_delay_s: float = _retry.DEFAULT_MAX_DELAY_S
    deadline_margin_ms: int = _deadline.DEFAULT_MARGIN_MS

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "LoopSettings":
        """From ``settings.load(LoopSettings.SETTINGS, ...)``'s result."""
        retry = _retry.RetryConfig.from_values(values)
        return cls(retry.max_retries, retry.base_delay_s, retry.max_delay_s, values["DEADLINE_MARGIN_MS"])


@dataclass
class Batch:
    """The state and outcome of one invocation. Every record ends in exactly one bucket:
    handled, captured, reported (for Lambda to retry) or dropped (soft-fail, logged)."""

    total: int
    log: Any
    request_id: str | None = None
    handled: int = 0
    failed: int = 0
    captured: int = 0
    dropped: int = 0
    retried: int = 0
    stopped_by: str | None = None
    reported: list[int] = field(default_factory=list)
    pending: list[PendingCapture] = field(default_factory=list)
    records: list = field(default_factory=list)

    def sequence_number(self, index: int) -> str | None:
        """Looked up only for records that failed or are reported: not on the hot path."""
        return _sequence_number(self.records[index])

    def report(self, index: int) -> None:
        self.reported.append(index)

    def counts(self) -> dict[str, int]:
        return {
            "processed": self.handled,
            "failed": self.failed,
            "captured": self.captured,
            "retried": self.retried,
            "reported_for_retry": len(self.reported),
        }

    def log_failure(self, message: str, record: Any, seq: str | None, exc: BaseException) -> None:
        ddb = record.get("dynamodb") if isinstance(record, dict) else None
        self.log.error(
            message,
            sequence_number=seq,
            event_name=record.get("eventName") if isinstance(record, dict) else None,
            event_id=record.get("eventID") if isinstance(record, dict) else None,
            keys=_plain_keys(ddb),
            error_type=type(exc).__name__,
            error=str(exc),
            exc_info=exc,
        )

    def log_capture_failure(self, item: PendingCapture) -> None:
        self.log.error(
            "could not capture failed record; reporting it for retry",
            sequence_number=item.sequence_number,
            reason=item.reason,
        )


def _sequence_number(raw: Any) -> str | None:
    ddb = raw.get("dynamodb") if isinstance(raw, dict) else None
    seq = ddb.get("SequenceNumber") if isinstance(ddb, dict) else None
    return seq if isinstance(seq, str) and seq else None


def _plain_keys(ddb: Any) -> Any:
    keys = ddb.get("Keys") if isinstance(ddb, dict) else None
    if not isinstance(keys, dict):
        return None
    try:
        from .deserializer import deserialize_image

        return deserialize_image(keys)
    except Exception:
        return keys


class BatchLoop:
    """Runs ``handle_record`` over a Lambda event under one failure policy."""

    def __init__(
        self,
        consumer: str,
        handle_record: Callable[[StreamRecord], Any],
        policy: FailurePolicy,
        settings: LoopSettings = LoopSettings(),
        metrics: Any = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.consumer = consumer
        self.handle_record = handle_record
        self.policy = policy
        self.settings = settings
        self.metrics = metrics
        if sleep is None:
            import time

            sleep = time.sleep
        self.sleep = sleep
        self.last_batch: Batch | None = None

    def _retry(self, record: StreamRecord, first_error: Exception, batch: Batch, deadline: Deadline) -> None:
        """After a first failure: bounded retries of transient errors, within the deadline.
        Raises when the failure stands."""

        def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
            batch.retried += 1
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
            self.handle_record,
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
        """Process one Lambda event; returns ``{"batchItemFailures": [...]}``."""
        records = event.get("Records") if isinstance(event, dict) else None
        if not isinstance(records, list):
            raise MalformedEventError(
                f"{self.consumer}: event has no 'Records' list; this function expects a DynamoDB "
                f"stream event (got {type(event).__name__}"
                f"{' with keys ' + str(sorted(map(str, event))[:5]) if isinstance(event, dict) else ''})"
            )
        request_id = getattr(context, "aws_request_id", None)
        batch = Batch(
            total=len(records),
            log=LazyLogger(consumer=self.consumer, policy=self.policy.name, aws_request_id=request_id),
            request_id=request_id,
        )
        self.last_batch = batch
        deadline = Deadline(context, self.settings.deadline_margin_ms)
        policy = self.policy
        handle = self.handle_record
        batch.records = records
        stop_at: int | None = None

        for index, raw in enumerate(records):
            if deadline.expired():
                batch.stopped_by = "deadline"
                stop_at = index
                break
            try:
                record = StreamRecord(raw)
                try:
                    handle(record)  # the hot path: no retry machinery unless something fails
                except Exception as first:
                    self._retry(record, first, batch, deadline)
            except Exception as exc:
                batch.failed += 1
                if policy.on_failure(batch, index, raw, batch.sequence_number(index), exc) is STOP:
                    batch.stopped_by = "policy"
                    stop_at = index + 1
                    break
            else:
                batch.handled += 1

        if stop_at is not None:
            # Everything not yet processed goes back to Lambda.
            for index in range(stop_at, len(records)):
                batch.report(index)
            if batch.stopped_by == "deadline":
                batch.log.warning(
                    "deadline near; reporting the rest of the batch for retry",
                    unprocessed=len(records) - stop_at,
                    remaining_ms=int((deadline.remaining_s() + deadline.margin_s) * 1000),
                )
        policy.finish(batch)
        response = self._response(batch)
        if self.metrics is not None:
            self.metrics.publish(batch.counts())
        return response

    def _response(self, batch: Batch) -> dict:
        """batchItemFailures in stream order. A reported record with no sequence number can't
        be named to Lambda; it is safe only when an earlier record is reported (Lambda resumes
        from the lowest). Otherwise the whole batch fails, so nothing is skipped."""
        reported = sorted(set(batch.reported))
        seqs = {i: batch.sequence_number(i) for i in reported}
        if reported and seqs[reported[0]] is None:
            raise MalformedEventError(
                f"{self.consumer}: record #{reported[0]} of the batch failed and has no "
                "dynamodb.SequenceNumber to report it by; failing the whole batch so Lambda retries it"
            )
        return {"batchItemFailures": [{"itemIdentifier": seqs[i]} for i in reported if seqs[i] is not None]}
