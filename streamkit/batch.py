"""One invocation's records and where each one ended: the "nothing lost" ledger.

Every record that enters a batch ends in exactly one bucket: **handled**, **captured**
(by a policy that holds failures and writes them somewhere, then settles them),
**reported** (``batchItemFailures``: Lambda retries it) or **dropped** (logged, by a policy's
choice). Only ``Batch`` moves records between buckets, through its methods; a policy only
returns a ``Decision`` for one ``Failure``. ``Batch.check()`` proves the count at the end of
every batch (the loop calls it; tests call it too).

The loop (``loop.py``) and the policies (``policies.py``) both build on this module and
never import each other.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from . import sources
from .errors import StreamkitError
from .excinfo import describe_error, drop_tracebacks
from .failurelog import FailureLog


class ConservationError(StreamkitError):
    """The buckets of a batch do not add up to the records that came in (a bug, never data)."""


@dataclass(frozen=True)
class Failure:
    """One record that failed: its position in the batch, the record as Lambda sent it, its
    sequence number (``None`` when it has none) and the exception that stands."""

    index: int
    raw: Any
    sequence_number: str | None
    error: BaseException

    @cached_property
    def error_info(self) -> dict:
        """``{"type", "message", "traceback"}`` (compact traceback), formatted once and
        shared by the failure log and the envelope."""
        return describe_error(self.error)


class Action(enum.Enum):
    DROP = "drop"  # logged and counted as dropped; the batch goes on
    REPORT = "report"  # reported for retry with everything after it; the batch stops here
    HOLD = "hold"  # the policy keeps it and settles it later (captured, or reported)


@dataclass(frozen=True)
class Decision:
    """What a policy decided for one failure; ``message`` is the log line's text."""

    action: Action
    message: str

    @classmethod
    def drop(cls, message: str = "record failed; dropped by the policy") -> Decision:
        return cls(Action.DROP, message)

    @classmethod
    def report(cls, message: str = "record failed; reported for retry") -> Decision:
        return cls(Action.REPORT, message)

    @classmethod
    def hold(cls, message: str = "record failed; held by the policy") -> Decision:
        return cls(Action.HOLD, message)


@dataclass(frozen=True)
class Settlement:
    """A held failure's outcome: captured (``problem`` is ``None``) or not (``problem`` says why;
    the record is then reported for retry)."""

    failure: Failure
    problem: str | None = None


class Policy(Protocol):
    """What the loop needs of a failure policy (``policies.FailurePolicy`` is the base class)."""

    name: str

    def on_failure(self, failure: Failure) -> Decision: ...

    def settle(self, held: Sequence[Failure], *, final: bool, request_id: str | None) -> Sequence[Settlement]: ...


class Batch:
    """The state and outcome of one invocation (see the module docstring).

    Read-only counters: ``handled``, ``captured``, ``dropped``, ``failed`` (failures seen,
    whatever became of them), ``retried`` (in-process retries); ``reported`` is the set of
    indexes reported for retry, ``held`` the failures a policy still holds.
    """

    __slots__ = ("records", "log", "request_id", "stopped_by", "failure_log", "_size", "_attempted", "_failed",
                 "_captured", "_dropped", "_retried", "_reported", "_held", "_failures", "_closed")

    def __init__(self, records: list, log: Any, request_id: str | None = None,
                 failure_log: FailureLog | None = None):
        self.records = records
        self.log = log
        self.request_id = request_id
        self.failure_log = failure_log or FailureLog(getattr(log, "context", {}))
        self.stopped_by: str | None = None
        self._size = len(records)
        self._attempted = 0
        self._failed = self._captured = self._dropped = self._retried = 0
        self._reported: set[int] = set()
        self._held: dict[int, Failure] = {}
        self._failures: list[Failure] = []  # every failure, to let go of at the end (release)
        self._closed = False

    # --- counters (read-only) -------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._size

    @property
    def handled(self) -> int:
        """Records whose ``handle_record`` succeeded: attempted minus failed (no per-record cost)."""
        return self._attempted - self._failed

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def captured(self) -> int:
        return self._captured

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def retried(self) -> int:
        return self._retried

    @property
    def reported(self) -> frozenset[int]:
        return frozenset(self._reported)

    @property
    def held(self) -> tuple[Failure, ...]:
        """The failures the policy holds and has not settled yet, in stream order."""
        return tuple(self._held.values())

    # --- what the loop tells it -----------------------------------------------------------
    def failure(self, index: int, error: BaseException) -> Failure:
        """Describe a failed record (its sequence number looked up only now: not on the hot path)."""
        raw = self.records[index]
        failure = Failure(index, raw, self.sequence_number(index), error)
        self._failures.append(failure)
        return failure

    def note_retry(self) -> None:
        self._retried += 1

    def apply(self, failure: Failure, decision: Any) -> bool:
        """Count ``failure`` as ``decision`` says; ``True`` when processing must stop here.

        Anything but a ``Decision`` (a policy bug) reports the record for retry: never lost.
        """
        self._failed += 1
        if not isinstance(decision, Decision):
            self.log.error("failure policy returned no Decision; reporting the record for retry",
                           returned=repr(decision)[:80], sequence_number=failure.sequence_number)
            decision = Decision.report()
        self.log_failure(decision.message, failure)
        if decision.action is Action.DROP:
            self._dropped += 1
            self._let_go(failure)  # logged, and nothing else will read it
            return False
        if decision.action is Action.HOLD:
            self._held[failure.index] = failure
            return False
        self._reported.add(failure.index)
        return True

    def settle(self, settlements: Iterable[Settlement]) -> bool:
        """Book held failures as captured or reported; ``True`` when one was reported (stop:
        Lambda resumes from the lowest reported record anyway)."""
        stop = False
        for s in settlements:
            index = s.failure.index
            if self._held.pop(index, None) is None:
                raise ConservationError(
                    f"settlement for record #{index}, which the policy does not hold (settled twice, or never held)"
                )
            if s.problem is None:
                self._captured += 1
            else:
                self.log.error("could not capture failed record; reporting it for retry",
                               sequence_number=s.failure.sequence_number, reason=s.problem)
                self._reported.add(index)
                stop = True
        return stop

    def stop(self, at: int, why: str) -> None:
        """Processing ends before record ``at``: it and the rest are reported for retry."""
        self.stopped_by = why
        self._reported.update(range(at, self._size))

    def close(self, attempted: int, policy_name: str) -> None:
        """End of the batch: ``attempted`` records went through ``handle_record``. Failures the
        policy still holds are reported (a policy that loses track loses nothing), then the
        count is checked."""
        self._attempted = attempted
        if self._held:
            lost = sorted(self._held)
            self.log.error("failure policy did not settle the records it held; reporting them for retry",
                           policy=policy_name, records=len(lost))
            self._reported.update(lost)
            self._held.clear()
        self._closed = True
        self.check()
        if self._failed:  # a healthy batch builds nothing here
            self.failure_log.summary({**self.tally(), "retried": self._retried, "stopped_by": self.stopped_by})

    def reported_in_order(self) -> list[int]:
        """The reported records in stream order; Lambda resumes from the first."""
        return sorted(self._reported)

    def result(self) -> BatchResult:
        """The outcome as counts (no records): what may outlive the invocation."""
        return BatchResult(
            size=self._size, handled=self.handled, failed=self._failed, captured=self._captured,
            dropped=self._dropped, retried=self._retried, reported=frozenset(self._reported),
            stopped_by=self.stopped_by, failed_by_type=dict(self.failure_log.by_type),
        )

    def release(self) -> None:
        """Let go of the event: the records, the failures, and the tracebacks of their errors
        (a traceback holds every frame it passed through, with the event in their locals).
        Called at the end of every invocation, so nothing of it lives into the next one."""
        for failure in self._failures:
            drop_tracebacks(failure.error)
        self._failures = []
        self._held.clear()
        self.records = []

    def _let_go(self, failure: Failure) -> None:
        """Free a dropped failure's traceback (its frames, the record in their locals) now
        rather than at the end of the batch: under soft-fail a batch would otherwise pile up
        one traceback per failure, and the garbage collector runs inside the invocation to
        walk them (most of a 50%-failing batch's time in bench/)."""
        drop_tracebacks(failure.error)
        if self._failures and self._failures[-1] is failure:
            self._failures.pop()

    # --- the conservation check -------------------------------------------------------------
    def tally(self) -> dict[str, int]:
        return {
            "in": self._size,
            "handled": self.handled,
            "captured": self._captured,
            "reported": len(self._reported),
            "dropped": self._dropped,
            "held": len(self._held),
        }

    def check(self) -> None:
        """Raise ``ConservationError`` unless in = handled + captured + reported + dropped
        (+ held, before ``close``)."""
        t = self.tally()
        out = t["handled"] + t["captured"] + t["reported"] + t["dropped"] + t["held"]
        if out != t["in"] or (self._closed and t["held"]):
            raise ConservationError(f"records in {t['in']} != out {out}: {t}")

    def counts(self) -> dict[str, int]:
        """The metrics of the batch."""
        return metric_counts(self)

    # --- helpers --------------------------------------------------------------------------------
    def sequence_number(self, index: int) -> str | None:
        """Looked up only for records that failed or are reported: not on the hot path."""
        return sources.sequence_number_of(self.records[index])  # either source; no decoding

    def log_failure(self, message: str, failure: Failure) -> None:
        self.failure_log.failure(message, failure)


@dataclass(frozen=True)
class BatchResult:
    """How a finished batch ended, in counts: what ``BatchLoop.last_batch`` keeps for tests and
    the local runtime (never the records: the event must not outlive its invocation)."""

    size: int
    handled: int
    failed: int
    captured: int
    dropped: int
    retried: int
    reported: frozenset[int]  # indexes of the records Lambda will deliver again
    stopped_by: str | None = None
    failed_by_type: dict[str, int] | None = None
    held: tuple = ()

    def tally(self) -> dict[str, int]:
        return {"in": self.size, "handled": self.handled, "captured": self.captured,
                "reported": len(self.reported), "dropped": self.dropped, "held": 0}

    def counts(self) -> dict[str, int]:
        """The batch's metrics (the local runtime keeps them as CloudWatch would)."""
        return metric_counts(self)

    def check(self) -> None:
        """Raise ``ConservationError`` unless in = handled + captured + reported + dropped."""
        t = self.tally()
        if t["handled"] + t["captured"] + t["reported"] + t["dropped"] != t["in"]:
            raise ConservationError(f"records in {t['in']} != out: {t}")


def metric_counts(b: Batch | BatchResult) -> dict[str, int]:
    """A batch's counts under the metric names ``streamkit.metrics.COUNTERS`` publishes."""
    return {
        "processed": b.handled,
        "failed": b.failed,
        "captured": b.captured,
        "retried": b.retried,
        "reported_for_retry": len(b.reported),
        "dropped": b.dropped,
    }
