"""Records of a backfill or a rewind through ``handle_record``; failures captured, never dropped.

A batch of Lambda-format records runs in order, each with the stream path's bounded
transient retries (``streamkit.retry``), in the job's mode: as read (a backfilled item is
already the current state; a rewind in ``replay`` mode) or rebuilt from the table
(``latest``, ``reprocess.latest``: the batch's items read in bulk with a consistent
``BatchGetItem``). A record that fails is captured to the consumer's
failure queue by the stream path's own ``streamkit.capture.FailureCapture`` (a versioned
envelope with ``attempts``, claim-checked to S3 when oversized), so the drain picks it up
after the next fix. The record captured is the one read from the source, not its rebuilt
copy (the drain re-reads the table in latest mode anyway).

If a capture is refused (SQS down, throttled past retries, oversized with no bucket), the
batch counts as done only up to the record before it: the caller's checkpoint stays there,
the part stops, and a resume runs the rest again (handled ones again too: handle_record is
idempotent by contract). Nothing is dropped.

A ``ConfigError`` from ``handle_record`` (a setting missing or wrong: every record would fail
the same way) is not a record's failure: it is not captured, the batch counts as done up to
the record before it, and the whole job stops (``run_batch``: exit code 2, the message names
the fix); a resume after the fix runs that record and the rest.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamkit import sources
from streamkit.batch import Failure
from streamkit.capture import FailureCapture
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError
from streamkit.record import StreamRecord
from streamkit.retry import call_with_retries

from .job import CONFIG_STOP
from .latest import build_latest, current_items, key_text, latest_record
from .snapshot import restamp


@dataclass
class FeedResult:
    """What became of the first ``done`` records of a batch (the rest did not run, or must
    run again because a capture before them was refused)."""

    done: int = 0
    handled: int = 0
    captured: int = 0
    by_error_type: Counter = field(default_factory=Counter)
    capture_problem: str | None = None  # why a capture was refused (the part stops)
    config_error: str | None = None  # handle_record raised ConfigError (the job stops, exit 2)


class Feeder:
    """Runs batches for one part of a job; one per thread (it holds no shared state)."""

    def __init__(self, handle_record: Callable[[StreamRecord], Any], *, mode: str, capture: FailureCapture,
                 request_id: str, deadline: Deadline, stop: threading.Event, max_retries: int,
                 base_delay_s: float, max_delay_s: float, clock_skew_s: float = 0.0, dynamodb: Any = None,
                 users_table: str | None = None):
        if mode not in ("as-read", "replay", "latest"):
            raise ValueError(f"unknown feed mode {mode!r}")
        if mode == "latest" and not (dynamodb is not None and users_table):
            raise ValueError("latest mode needs the users table and a DynamoDB client")
        self.handle_record, self.mode, self.capture = handle_record, mode, capture
        self.request_id, self.deadline, self.stop = request_id, deadline, stop
        self.max_retries, self.base_delay_s, self.max_delay_s = max_retries, base_delay_s, max_delay_s
        self.dynamodb, self.users_table = dynamodb, users_table
        self.clock_skew_s = clock_skew_s

    def halted(self) -> bool:
        return self.stop.is_set() or self.deadline.expired()

    def _prefetch(self, records: list[dict]) -> tuple[dict[str, dict | None], float]:
        """latest mode: the batch's items in one consistent ``BatchGetItem`` per 100 keys, and
        when they were read (empty when that fails: each record then reads its item alone)."""
        keys = [k for k in (sources.keys_of(r) for r in records) if k]
        read_at = time.time()
        if not keys or not self.users_table:
            return {}, read_at
        try:
            return current_items(self.dynamodb, self.users_table, keys), read_at
        except Exception:
            return {}, read_at

    def _one(self, record: dict, current: tuple[dict[str, dict | None], float]) -> None:
        if self.mode == "latest":
            # the item as it is now, ordered as that read (``reprocess.snapshot``): it replaces
            # what the changes before it wrote, and loses to any change made after it
            items, read_at = current
            keys = sources.keys_of(record)
            text = key_text(keys) if keys else None
            if text in items:
                record = latest_record(record, items[text])
            else:
                read_at = time.time()
                record = build_latest(self.dynamodb, self.users_table or "", record)
            record = restamp(record, read_at, self.clock_skew_s)
        call_with_retries(self.handle_record, StreamRecord(record), deadline=self.deadline,
                          max_retries=self.max_retries, base_delay_s=self.base_delay_s,
                          max_delay_s=self.max_delay_s)

    def run(self, records: list[dict]) -> FeedResult:
        """Run ``records`` in order until the end, a stop or the deadline; capture the failures."""
        failures: list[Failure] = []
        ran = 0
        config_error: str | None = None
        current = self._prefetch(records) if self.mode == "latest" and not self.halted() else ({}, 0.0)
        for i, record in enumerate(records):
            if self.halted():
                break
            try:
                self._one(record, current)
            except ConfigError as exc:  # the consumer's configuration, not this record: stop before it
                config_error = str(exc) or type(exc).__name__
                break
            except Exception as exc:  # any failure, malformed records included: captured
                seq = sources.sequence_number_of(record)
                failures.append(Failure(index=i, raw=record, sequence_number=seq, error=exc))
            ran = i + 1
        refused = self._capture(failures)
        done = min(refused) if refused else ran
        failed_before = [f for f in failures if f.index < done]
        result = FeedResult(done=done, handled=done - len(failed_before), captured=len(failed_before),
                            capture_problem=refused[min(refused)] if refused else None,
                            config_error=config_error if done == ran else None)
        for f in failed_before:
            result.by_error_type[type(f.error).__name__] += 1
        return result

    def _capture(self, failures: list[Failure]) -> dict[int, str]:
        """Capture; ``{index: why}`` of the ones refused."""
        if not failures:
            return {}
        try:
            return self.capture.capture(failures, self.request_id)
        except Exception as exc:  # the queue unreachable past the client's retries
            return {f.index: f"{type(exc).__name__}: {exc}"[:300] for f in failures}


def run_batch(feeder: Feeder | None, records: list[dict], state: Any, ctx: Any) -> int:
    """Feed ``records`` (a dry run, ``feeder`` None: only count them) for a part of a job,
    adding to ``state.counts`` (``handled``, ``captured``, ``taken``, error types). When the
    batch stopped short, the part's state says why: ``failed`` (a capture was refused, or
    ``handle_record`` raised ``ConfigError``: then every part stops) or halted (a stop, a
    cancel, the deadline). Returns how many records are done."""
    if feeder is None or not records:
        done = len(records)
    else:
        result = feeder.run(records)
        done = result.done
        state.counts.handled += result.handled
        state.counts.captured += result.captured
        state.counts.by_error_type.update(result.by_error_type)
        if done < len(records) and result.capture_problem:
            state.status = "failed"
            state.problem = f"capture refused, stopped before it: {result.capture_problem}"[:500]
        elif result.config_error:
            state.status, state.stopped_by = "failed", CONFIG_STOP
            state.problem = (f"handle_record raised ConfigError: {result.config_error} -- fix the configuration, "
                             "then resume the job: the record it stopped at and the rest run then "
                             "(nothing after the checkpoint was handled or captured)")[:1000]
            ctx.abort(f"stopped: part {state.part} hit a configuration error")
    state.counts.taken += done
    if done < len(records) and state.status != "failed":
        ctx.halt(state, ctx.stop_reason() or "interrupted")
    return done
