"""A backfill or rewind job: its manifest, its parts, their checkpoints, and the summary.

A job is split into **parts** that can run in parallel and resume independently: Scan
segments for a backfill, shard lineages for a rewind. Each part's state (status,
checkpoint, counts) is saved in the job store (``reprocess.checkpoints``) after every page or
batch, so a job stopped anywhere (Ctrl-C, a killed laptop, a Lambda reaching its deadline,
a cancel) resumes from its last checkpoint, on a laptop or in Lambda alike.

Counts in a part's state cover exactly what its checkpoint covers: work done after the last
save and lost with the process is done, and counted, again on resume. So in every summary
``taken == handled + captured`` (a dry run only counts ``taken``), and records handled twice
are at most the ones between a part's last checkpoint and the moment it died.

Part statuses: ``pending`` (never ran), ``running``, ``paused`` (stopped at the deadline or
by Ctrl-C: resume it), ``failed`` (a capture was refused or the source could not be read:
``problem`` says why; resume it after the cause is fixed), ``cancelled``, ``done``.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamkit.errors import ConfigError
from streamkit.timefmt import now_iso, widen

from .checkpoints import CheckpointStore, check_job_id, manifest_key, part_key, summary_key
from .jobstore import cancel_key, cancel_request, new_job_id
from .summary import EXIT_FAILURES, EXIT_OK, EXIT_USAGE

PART_STATUSES = ("pending", "running", "paused", "failed", "cancelled", "done")
CONFIG_STOP = "configuration error"  # stopped_by of a part whose handle_record raised ConfigError
FINISHED = frozenset({"done", "cancelled"})  # will not run again unless resumed by hand (cancelled)
CANCEL_CHECK_INTERVAL_S = 5.0


class JobError(ConfigError):
    """A job cannot be started or resumed as asked (exit code 2, HTTP 400)."""


@dataclass
class Counts:
    """One part's tallies (``read`` = items or stream records read from the source;
    ``skipped`` = stream records read while seeking, outside the rewind's time range)."""

    read: int = 0
    skipped: int = 0
    taken: int = 0
    handled: int = 0
    captured: int = 0
    pages: int = 0
    consumed_rcu: float = 0.0
    by_error_type: Counter = field(default_factory=Counter)
    by_event: Counter = field(default_factory=Counter)  # eventName of the records taken
    oldest: str | None = None
    newest: str | None = None

    NUMBERS = ("read", "skipped", "taken", "handled", "captured", "pages", "consumed_rcu")

    def add(self, other: Counts) -> None:
        for name in self.NUMBERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_error_type.update(other.by_error_type)
        self.by_event.update(other.by_event)
        self.seen(other.oldest)
        self.seen(other.newest)

    def seen(self, when: str | None) -> None:
        self.oldest, self.newest = widen(self.oldest, self.newest, when)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {n: getattr(self, n) for n in self.NUMBERS}
        out["consumed_rcu"] = round(self.consumed_rcu, 3)
        out["by_error_type"] = dict(self.by_error_type.most_common())
        out["by_event"] = dict(self.by_event.most_common())
        out["oldest"], out["newest"] = self.oldest, self.newest
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> Counts:
        data = data or {}
        c = cls(**{n: data.get(n, 0) for n in cls.NUMBERS})
        c.by_error_type = Counter(data.get("by_error_type") or {})
        c.by_event = Counter(data.get("by_event") or {})
        c.oldest, c.newest = data.get("oldest"), data.get("newest")
        return c


@dataclass
class PartState:
    part: str
    status: str = "pending"
    checkpoint: dict = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    invocations: int = 0
    problem: str | None = None
    stopped_by: str | None = None
    updated_at: str | None = None

    def to_dict(self) -> dict:
        return {"part": self.part, "status": self.status, "checkpoint": self.checkpoint,
                "counts": self.counts.to_dict(), "invocations": self.invocations, "problem": self.problem,
                "stoppedBy": self.stopped_by, "updatedAt": self.updated_at}

    @classmethod
    def from_dict(cls, part: str, data: dict | None) -> PartState:
        if not data:
            return cls(part)
        return cls(part, status=data.get("status", "pending"), checkpoint=data.get("checkpoint") or {},
                   counts=Counts.from_dict(data.get("counts")), invocations=data.get("invocations", 0),
                   problem=data.get("problem"), stopped_by=data.get("stoppedBy"), updated_at=data.get("updatedAt"))


class Job:
    """A job's manifest and its parts' states in a store."""

    def __init__(self, store: CheckpointStore, manifest: dict):
        self.store, self.manifest = store, manifest
        self.job_id: str = manifest["jobId"]
        self._cancel_seen: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()
        # a cancel this process hears of first (the operator API's, in memory): seen at once
        self.cancel_heard: Callable[[], str | None] | None = None

    # ---- creating and finding ----------------------------------------------------------
    @classmethod
    def create(cls, store: CheckpointStore, *, kind: str, consumer: str, options: dict, parts: list[str], source: dict,
               job_id: str | None = None) -> Job:
        job_id = check_job_id(job_id) if job_id else new_job_id()  # time-ordered: the API lists it in order
        if store.get(manifest_key(job_id)) is not None:
            raise JobError(f"job {job_id} already exists in {store.location}; resume it with --resume {job_id}")
        manifest = {"jobId": job_id, "kind": kind, "consumer": consumer, "options": options, "parts": parts,
                    "source": source, "createdAt": now_iso(), "store": store.location}
        store.put(manifest_key(job_id), manifest)
        return cls(store, manifest)

    @classmethod
    def load(cls, store: CheckpointStore, job_id: str) -> Job:
        check_job_id(job_id)
        manifest = store.get(manifest_key(job_id))
        if manifest is None:
            raise JobError(f"no job {job_id} in {store.location} (checkpoints are kept where the job started: "
                           "pass the same --checkpoints, or set JOBS_BUCKET)")
        return cls(store, manifest)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def consumer(self) -> str:
        return self.manifest["consumer"]

    @property
    def parts(self) -> list[str]:
        return list(self.manifest["parts"])

    @property
    def source(self) -> dict:
        return self.manifest["source"]

    # ---- parts -------------------------------------------------------------------------
    def part_state(self, part: str) -> PartState:
        return PartState.from_dict(part, self.store.get(part_key(self.job_id, part)))

    def save_part(self, state: PartState) -> None:
        state.updated_at = now_iso()
        self.store.put(part_key(self.job_id, state.part), state.to_dict())

    def states(self) -> list[PartState]:
        return [self.part_state(p) for p in self.parts]

    # ---- cancel --------------------------------------------------------------------------
    def cancel(self, by: dict | str | None = None) -> None:
        """Ask every part to stop at its next checkpoint (``cancel.json``, ``reprocess.jobstore``'s
        format: the operator API writes the same)."""
        self.store.put(cancel_key(self.job_id), cancel_request(by))

    def cancel_requested(self) -> dict | None:
        """The cancel request (who, when), or None."""
        return self.store.get(cancel_key(self.job_id))

    def reopen(self) -> list[str]:
        """An operator's resume of a cancelled job: the cancel request is withdrawn and the
        cancelled parts are paused again, so they run on from their checkpoints. The parts
        reopened. (Only a person's ``--resume`` does this, never a Lambda continuation.)"""
        if self.store.get(cancel_key(self.job_id)) is not None:
            self.store.delete(cancel_key(self.job_id))
        with self._lock:
            self._cancel_seen = (0.0, False)
        reopened = []
        for state in self.states():
            if state.status == "cancelled":
                state.status, state.stopped_by = "paused", "resumed after a cancel"
                self.save_part(state)
                reopened.append(state.part)
        return reopened

    def cancelled(self, fresh: bool = False) -> bool:
        """Is there a cancel marker? Read at most every few seconds (it is a GET per look)."""
        if self.cancel_heard is not None and self.cancel_heard():
            with self._lock:
                self._cancel_seen = (time.monotonic(), True)
            return True
        with self._lock:
            at, seen = self._cancel_seen
            if seen or (not fresh and time.monotonic() - at < CANCEL_CHECK_INTERVAL_S):
                return seen
        seen = self.store.get(cancel_key(self.job_id)) is not None
        with self._lock:
            self._cancel_seen = (time.monotonic(), seen)
        return seen

    # ---- the summary -----------------------------------------------------------------------
    def summary(self, states: list[PartState] | None = None) -> dict:
        """Every part's counts added up, with the job's status and exit code."""
        states = self.states() if states is None else states
        total = Counts()
        by_status: Counter = Counter()
        problems, stops = [], []
        for s in states:
            total.add(s.counts)
            by_status[s.status] += 1
            if s.problem:
                problems.append(f"part {s.part}: {s.problem}")
            if s.stopped_by:
                stops.append(s.stopped_by)
        options = self.manifest.get("options") or {}
        dry_run = bool(options.get("dryRun"))
        finished = all(s.status in FINISHED for s in states)
        all_done = all(s.status == "done" for s in states)
        if all_done and (dry_run or total.captured == 0):
            status, code = "succeeded", EXIT_OK
        elif all_done:
            status, code = "finished-with-failures", EXIT_FAILURES
        elif any(s.stopped_by == CONFIG_STOP for s in states):  # the consumer's settings: exit 2, as for usage
            status, code = "failed", EXIT_USAGE
        elif by_status.get("cancelled") and finished:
            status, code = "cancelled", EXIT_FAILURES
        elif by_status.get("failed"):
            status, code = "failed", EXIT_FAILURES
        elif by_status.get("running") or by_status.get("pending"):
            status, code = "running", EXIT_FAILURES
        else:
            status, code = "paused", EXIT_FAILURES
        out = {
            "kind": self.kind, "job_id": self.job_id, "consumer": self.consumer,
            **({"windows": self.source.get("windows"),
                "windows_done": sum(int(s.checkpoint.get("window") or 0) for s in states)}
               if self.kind == "rewind" else {}),
            "mode": self.source.get("mode"), "dry_run": dry_run, "status": status,
            "parts": len(states), "part_status": dict(by_status),
            **total.to_dict(),
            "source": self.source, "options": options, "checkpoints": self.store.location,
            "created_at": self.manifest.get("createdAt"),
            "stopped_by": Counter(stops).most_common(1)[0][0] if stops else None,
            "problems": problems[:20], "notes": list(self.source.get("notes") or []), "exit_code": code,
        }
        return out

    def write_summary_if_finished(self, summary: dict | None = None) -> dict:
        """Store ``jobs/<jobId>.json`` (where the operator API reads any job's result) once
        every part has finished; returns the summary either way."""
        summary = summary or self.summary()
        if summary["status"] in ("succeeded", "finished-with-failures", "cancelled"):
            self.store.put(summary_key(self.job_id), {**summary, "jobId": self.job_id, "finishedAt": now_iso()})
        return summary


def progress_of(summary: dict) -> tuple[int, int | None]:
    """(done, total) of a job summary, as an operator reads it: items taken of the table's
    count for a backfill; windows of a rewind (a window is done on every part, on average)."""
    if summary.get("kind") == "rewind":
        parts = max(1, int(summary.get("parts") or 1))
        return int(summary.get("windows_done") or 0) // parts, summary.get("windows")
    total = (summary.get("source") or {}).get("itemCount")
    if summary.get("status") == "planned":  # a backfill's dry run: it would take them all
        return int(total or 0), total
    return int(summary.get("taken") or 0), total


class PartRunner(Protocol):
    """Runs one part from its checkpoint; saves through ``ctx.save`` at every checkpoint and
    returns with ``state.status`` set (done, paused, failed or cancelled)."""

    def run(self, state: PartState, ctx: RunContext) -> None: ...


@dataclass
class RunContext:
    """What a part runner needs besides its own state: the job, when to stop, how to save."""

    job: Job
    deadline: Any  # streamkit.deadline.Deadline
    stop: threading.Event
    progress: Callable[[PartState], None] | None = None
    aborted: str | None = None  # why one part stopped them all (``abort``)

    def abort(self, reason: str) -> None:
        """Stop every part of this run at its next checkpoint (a part hit a configuration error)."""
        self.aborted = reason
        self.stop.set()

    def stop_reason(self) -> str | None:
        if self.stop.is_set():
            return self.aborted or "interrupted"
        if self.job.cancelled():
            return "cancelled"
        if self.deadline.expired():
            return "time budget used"
        return None

    def halt(self, state: PartState, reason: str) -> None:
        state.status = "cancelled" if reason == "cancelled" else "paused"
        state.stopped_by = reason

    def save(self, state: PartState) -> None:
        self.job.save_part(state)
        if self.progress is not None:
            self.progress(state)


def run_parts(job: Job, parts: list[str], runner: PartRunner, *, threads: int, deadline: Any,
              stop: threading.Event, progress: Callable[[PartState], None] | None = None,
              log: Any = None) -> list[PartState]:
    """Run ``parts`` of ``job`` on up to ``threads`` threads; returns their final states.

    Finished parts are skipped (a resume runs only what is left). A part that raises is
    marked ``failed`` with the error as its problem (its checkpoint stays where it was).
    """
    ctx = RunContext(job, deadline, stop, progress)

    def one(part: str) -> PartState:
        state = job.part_state(part)
        if state.status in FINISHED:
            return state
        if job.cancelled(fresh=True):
            ctx.halt(state, "cancelled")
            ctx.save(state)
            return state
        state.status, state.problem, state.stopped_by = "running", None, None
        state.invocations += 1
        ctx.save(state)
        try:
            runner.run(state, ctx)
        except Exception as exc:
            from streamkit.awsclient import describe_aws_error

            state.status, state.problem = "failed", describe_aws_error(exc)
            if log is not None:
                log.error("part failed", part=part, error=state.problem)
        if state.status == "running":  # a runner that returned without saying: it stopped early
            state.status = "paused"
        ctx.save(state)
        return state

    # Parts run on worker threads even one at a time, so Ctrl-C reaches only this thread,
    # which sets ``stop``: every part then saves its checkpoint and returns.
    results: dict[str, PartState] = {}
    with ThreadPoolExecutor(max(1, min(threads, len(parts))), thread_name_prefix=f"job-{job.job_id[:8]}") as pool:
        futures = {pool.submit(one, p): p for p in parts}
        try:
            pending = set(futures)
            while pending:  # wake up now and then so Ctrl-C reaches the main thread
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for f in done:
                    results[futures[f]] = f.result()
        except BaseException:
            stop.set()  # Ctrl-C: every part saves its checkpoint and stops
            raise
    return [results[p] for p in parts]
