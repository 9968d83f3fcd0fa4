"""The reprocess Lambda: run one operator job (a drain by default), on demand or on a schedule,
or a part of a backfill or a rewind (``"kind": "backfill" | "rewind"`` without ``"request"``:
``reprocess.remote``, which keeps its own checkpoints and continuations). A backfill or rewind
the operator API starts comes in the API's shape (below) and fans its parts out from here
(``reprocess.checkpointed``).

Event, a drain (the schedule's and the CLI's shape):
    {"consumer": "search-indexer", "max"?: int, "mode"?: "replay"|"latest",
     "dryRun"?: bool, "concurrency"?: int, "maxAttempts"?: int, "jobId"?: str}
validated by ``reprocess.options.DrainOptions.from_wire`` (the limits the CLI and the
operator API use; an unknown field is an error). The operator API sends its jobs as
    {"kind": "drain"|"redrive"|..., "consumer", "jobId", "total"?, "request": {...}}
(``reprocess.jobkinds`` knows each kind).

Result: the run's summary dict (``exit_code`` 0/1 inside it; 2 with ``error`` for a bad event
or configuration). The time budget is the Lambda's remaining time minus
``REPROCESS_MARGIN_MS`` (checked at cold start), so the run stops taking messages before
the function would be killed mid-batch. With a ``jobId`` the run keeps its status in the jobs
bucket (``reprocess.jobstore``: progress every few seconds, the summary at the end) and
stops between messages when the operator cancels it (a cancel request there, polled).
Queues come from <KEY>_FAILURE_QUEUE_URL / <KEY>_PARKING_QUEUE_URL (serverless.yml).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from reprocess.jobkinds import KINDS, JobContext, get_kind
from reprocess.jobstore import FINAL_STATUSES, JOB_ID, CancelPoll, JobStore, status_of
from reprocess.options import JOB_KINDS, JOBS_BUCKET, LAMBDA_SETTINGS, DrainOptions
from reprocess.summary import EXIT_USAGE
from reprocess.worker import drain
from streamkit.awsclient import make_client
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError
from streamkit.settings import load
from streamkit.timefmt import now_iso

# Every setting the run reads, checked at cold start (one ConfigError naming each fix);
# REPROCESS_MARGIN_MS: stop taking messages this long before the Lambda deadline.
SETTINGS = load(LAMBDA_SETTINGS, owner="reprocess")
MARGIN_MS: int = SETTINGS["REPROCESS_MARGIN_MS"]
PROGRESS_EVERY_S = 5.0  # a status write at most this often while running (plus the final one)


def handler(event: Any, context: Any) -> dict:
    kind = event.get("kind") if isinstance(event, dict) else None
    if kind in JOB_KINDS and "request" not in event:  # a backfill's or rewind's part, the CLI's or a schedule's
        from reprocess.remote import handle_event

        return handle_event(event, context, margin_ms=MARGIN_MS)
    job_id = event.get("jobId") if isinstance(event, dict) else None
    store = _store(job_id)
    deadline = Deadline(context, margin_ms=MARGIN_MS) if context is not None else None
    started = time.time()
    reporter = _Reporter(store, job_id, started, total=event.get("total") if isinstance(event, dict) else None)
    reporter.save({"status": "running", "startedAt": now_iso()})
    ctx = JobContext(job_id=job_id, total=reporter.total, should_stop=CancelPoll(store, job_id),
                     report=reporter.progress, deadline=deadline, options={"wait_time_s": 1},
                     jobs_bucket=store.bucket if store is not None else None)
    result = _run(event, ctx)
    if job_id is not None and store is None:
        result.setdefault("notes", []).append("job summary not stored: no JOBS_BUCKET or an invalid jobId")
    cancelled = str(result.get("stopped_by") or "").startswith("cancelled")
    status = status_of(result, cancelled=cancelled)  # a backfill's parts may still be running
    reporter.save({"status": status, "summary": result, "stoppedBy": result.get("stopped_by"),
                   "finishedAt": now_iso() if status in FINAL_STATUSES else None,
                   "durationS": round(time.time() - started, 3), "error": result.get("error")}, final=True)
    return result


def _store(job_id: Any) -> JobStore | None:
    """Where this run keeps its status: only for a job the operator API started."""
    bucket = JOBS_BUCKET.read() or os.environ.get("FAILURE_BUCKET")
    if not bucket or not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        return None
    return JobStore(bucket, lambda: make_client("s3"))


class _Reporter:
    """Status writes to the jobs bucket: progress at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, store: JobStore | None, job_id: Any, started: float, total: Any):
        self.store, self.job_id, self.started = store, job_id, started
        self.total = total if isinstance(total, int) and not isinstance(total, bool) else None
        self._last = 0.0
        self._status: dict = {}

    def save(self, fields: dict, *, final: bool = False) -> None:
        self._status.update(fields)
        if self.store is None:
            return
        try:
            self.store.save_status(self.job_id, self._status)
        except Exception:
            if final:
                raise  # the summary must not vanish silently: the invocation fails and says why

    def progress(self, done: int, summary: dict) -> None:
        now = time.time()
        self._status["progress"] = {"done": done, "total": self.total, "updatedAt": now_iso(),
                                    "startedEpoch": self.started}
        self._status["summary"] = summary
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self.save({})


def _run(event: Any, ctx: JobContext) -> dict:
    consumer = event.get("consumer") if isinstance(event, dict) else None
    try:
        if isinstance(event, dict) and "kind" in event and ("request" in event or event["kind"] != "drain"):
            if event["kind"] not in KINDS:
                known = ["drain", *JOB_KINDS, *(k for k in KINDS if k != "drain")]
                raise ConfigError(f"kind must be one of {', '.join(known)}, got {event['kind']!r}")
            kind = get_kind(event["kind"])
            request = event.get("request") or {}
            if not isinstance(consumer, str):
                raise ConfigError('the event needs a "consumer"')
            return kind.run(consumer, kind.parse(request, consumer), ctx)
        if isinstance(event, dict):  # a drain in the schedule's flat shape ("kind": "drain" allowed)
            event = {k: v for k, v in event.items() if k != "kind"}
        options = DrainOptions.from_wire(event)
        summary = drain(options=dataclasses.replace(options, wait_time_s=1), deadline=ctx.deadline,
                        should_stop=ctx.should_stop if ctx.job_id else None,
                        progress=lambda s: ctx.report(s.taken, s.to_dict()))
    except ConfigError as exc:
        return {"consumer": consumer, "error": str(exc), "exit_code": EXIT_USAGE}
    return summary.to_dict()
