"""Operator jobs from the API: any kind ``reprocess.jobkinds`` registers (a drain, a redrive of
parked messages, ...), run in a thread of this process locally or by the reprocess Lambda
(``REPROCESS_FUNCTION_NAME``: an asynchronous invoke), kept in the jobs bucket
(``reprocess.jobstore``) so their history survives a reload, a restart and a cold start.

A job records who started it (the caller's IAM identity), the count they confirmed (its
total), progress "done of total" with an ETA, why it stopped (in words), and a cancel: a local
job's ``should_stop`` is an event checked before every message; a Lambda-run job polls its
cancel request in the bucket. Without a bucket (a local API with no ``JOBS_BUCKET``) jobs
live in memory only, and every answer says so.
"""
from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from reprocess.jobkinds import JobContext, Plan, get_kind
from reprocess.jobstore import (
    FINAL_STATUSES,
    STATUS_FIELDS,
    JobStore,
    cancelled_by,
    eta_seconds,
    may_change,
    new_job_id,
    newest_first,
    status_of,
)
from streamkit.awsclient import ClientCache, describe_aws_error
from streamkit.timefmt import now_iso

MAX_JOBS_KEPT = 200
HISTORY_TTL_S = 10.0
LOCAL_STATUS_EVERY_S = 2.0
NO_STORE_NOTE = "not kept after this API process ends: no JOBS_BUCKET"


class JobConflict(Exception):
    """A local job for this consumer is already running (two jobs on one queue in one process)."""


class JobFinished(Exception):
    """The job already finished: there is nothing to cancel."""


class JobRunner:
    """Starts jobs, cancels them, and answers for them (live and from history); thread-safe."""

    def __init__(self, *, clients: ClientCache, function_name: str | None = None, jobs_bucket: str | None = None,
                 on_finish: Callable[[str], None] | None = None, drain_options: dict | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.clients = clients
        self.function_name = function_name
        self.jobs_bucket = jobs_bucket
        self.store = JobStore(jobs_bucket, lambda: clients.get("s3")) if jobs_bucket else None
        self.on_finish = on_finish or (lambda consumer: None)
        self.drain_options = drain_options or {}  # extra run options for local jobs (tests, wait times)
        self.clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, dict] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._cancel: dict[str, str] = {}  # job id -> why (a local job's cancel request)
        self._final: dict[str, dict] = {}  # finished jobs read from the bucket: they never change
        self._history: tuple[float, list[str], str | None] | None = None

    @property
    def remote(self) -> bool:
        return bool(self.function_name)

    # ---- planning and starting ------------------------------------------------------------------
    def plan(self, kind: str, consumer: str, request: dict) -> Plan:
        return get_kind(kind).plan(self.clients, consumer, request)

    def running(self, consumer: str) -> dict | None:
        """The local job of ``consumer`` still queued or running (one at a time per consumer)."""
        with self._lock:
            for job in self._jobs.values():
                if job["consumer"] == consumer and job["status"] in ("queued", "running"):
                    return self._decorate(dict(job))
        return None

    def start(self, kind: str, consumer: str, request: dict, *, caller: dict, total: int | None,
              confirmed: bool) -> dict:
        spec = get_kind(kind)
        job_id = new_job_id()
        job = {
            "jobId": job_id, "kind": kind, "title": spec.title, "consumer": consumer, "request": request,
            "runner": "lambda" if self.remote else "local", "status": "queued", "createdAt": now_iso(),
            "caller": caller, "total": total, "confirmedCount": total if confirmed else None,
            "startedAt": None, "finishedAt": None, "progress": None, "summary": None, "stoppedBy": None,
            "error": None,
        }
        with self._lock:
            if not self.remote and any(j["consumer"] == consumer and j["status"] in ("queued", "running")
                                       for j in self._jobs.values()):
                raise JobConflict(f"a job for {consumer} is already running")
            self._jobs[job_id] = job
            self._trim()
        if self.store is not None:
            try:
                self.store.save_job(job)
            except Exception as exc:
                self._update(job_id, note=f"job record not stored in s3://{self.jobs_bucket}: {describe_aws_error(exc)}")
        else:
            self._update(job_id, note=NO_STORE_NOTE)
        if self.remote:
            self._invoke(job)
        else:
            thread = threading.Thread(target=self._run_local, args=(job_id,), name=f"job-{job_id[-8:]}", daemon=True)
            self._threads[job_id] = thread
            thread.start()
        return self.get(job_id) or job

    def _invoke(self, job: dict) -> None:
        payload = {"kind": job["kind"], "consumer": job["consumer"], "jobId": job["jobId"], "total": job["total"],
                   "request": job["request"]}
        try:
            resp = self.clients.get("lambda").invoke(
                FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps(payload).encode())
        except Exception as exc:
            self._finish_local_record(job["jobId"], status="failed", error=f"invoke failed: {describe_aws_error(exc)}")
            return
        note = ("runs in the reprocess Lambda; its progress and summary appear here from "
                f"{self.store.where(job['jobId'])}" if self.store else
                "runs in the reprocess Lambda; its summary is in that function's logs (JOBS_BUCKET unset)")
        self._update(job["jobId"], status="submitted", startedAt=now_iso(), invokeStatusCode=resp.get("StatusCode"),
                     function=self.function_name, note=note)

    # ---- running locally -------------------------------------------------------------------------
    def _run_local(self, job_id: str) -> None:
        with self._lock:
            job = dict(self._jobs[job_id])
        started = time.time()
        self._update(job_id, status="running", startedAt=now_iso(),
                     progress={"done": 0, "total": job["total"], "startedEpoch": started})
        last_save = [0.0]

        def report(done: int, summary: dict) -> None:
            self._update(job_id, progress={"done": done, "total": job["total"], "startedEpoch": started,
                                           "updatedAt": now_iso()}, summary=summary)
            if self.store is not None and time.time() - last_save[0] >= LOCAL_STATUS_EVERY_S:
                last_save[0] = time.time()
                self._save_status(job_id)

        ctx = JobContext(job_id=job_id, total=job["total"], should_stop=lambda: self._cancel.get(job_id),
                         report=report, options=dict(self.drain_options), jobs_bucket=self.jobs_bucket)
        try:
            summary = get_kind(job["kind"]).run(job["consumer"], job["request"], ctx)
            stopped = summary.get("stopped_by")
            self._update(job_id, summary=summary, stoppedBy=stopped, error=summary.get("error"),
                         status=status_of(summary, cancelled=job_id in self._cancel),
                         finishedAt=now_iso(), durationS=round(time.time() - started, 3))
        except Exception as exc:  # ConfigError and anything unexpected: the job says why
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:1000],
                         stoppedBy=f"could not run: {type(exc).__name__}", finishedAt=now_iso(),
                         durationS=round(time.time() - started, 3))
        finally:
            self._save_status(job_id)
            self.on_finish(job["consumer"])

    def _save_status(self, job_id: str) -> None:
        if self.store is None:
            return
        with self._lock:
            job = dict(self._jobs[job_id])
        try:
            self.store.save_status(job_id, {k: job.get(k) for k in STATUS_FIELDS})
        except Exception as exc:
            self._update(job_id, note=f"status not stored in s3://{self.jobs_bucket}: {describe_aws_error(exc)}")

    def _finish_local_record(self, job_id: str, **fields: Any) -> None:
        self._update(job_id, finishedAt=now_iso(), **fields)
        self._save_status(job_id)

    def wait(self, job_id: str, timeout_s: float) -> dict | None:
        """Join a local job's thread (tests, shutdown)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout_s)
        return self.get(job_id)

    # ---- cancelling ------------------------------------------------------------------------------
    def cancel(self, job_id: str, caller: dict) -> dict | None:
        """Ask a job to stop before its next item; None when there is no such job."""
        job = self.get(job_id)
        if job is None:
            return None
        if job["status"] in FINAL_STATUSES:
            raise JobFinished(f"job {job_id} already {job['status']}")
        request = {"by": caller, "at": now_iso()}
        with self._lock:
            if job_id in self._jobs and self._jobs[job_id]["runner"] == "local":
                self._cancel.setdefault(job_id, cancelled_by(request))
            if job_id in self._jobs:
                self._jobs[job_id]["cancelRequested"] = request
        if self.store is not None:
            try:
                self.store.request_cancel(job_id, request)
            except Exception as exc:
                if job.get("runner") == "lambda":
                    raise RuntimeError(f"cancel request not stored: {describe_aws_error(exc)}") from exc
        return self.get(job_id)

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict | None:
        with self._lock:
            live = json.loads(json.dumps(self._jobs.get(job_id), default=str)) if job_id in self._jobs else None
            final = self._final.get(job_id)
        if live is not None and (live["runner"] == "local" or self.store is None):
            if self.store is None or not may_change(live):
                return self._decorate(live)
            stored = self.store.load(job_id)  # a cancelled backfill may have been resumed since
            if stored is None:
                return self._decorate(live)
            merged = {**live, **stored}
            if "cancelRequested" not in stored:  # withdrawn by the resume
                merged.pop("cancelRequested", None)
            return self._decorate(merged)
        stored = final or (self.store.load(job_id) if self.store is not None else None)
        if stored is None and live is None:
            return None
        job = {**(live or {}), **(stored or {})}
        if live is not None and live.get("status") in FINAL_STATUSES:  # e.g. the invoke itself failed
            job["status"] = live["status"]
        if stored is not None and stored.get("status") in FINAL_STATUSES and not may_change(stored):
            with self._lock:
                self._final[job_id] = stored
        return self._decorate(job)

    def list(self, limit: int = 20) -> dict:
        """The newest jobs: this process's and the bucket's history, newest first."""
        ids, error = self._history_ids(limit)
        with self._lock:
            mine = sorted(self._jobs, reverse=True)
        out, seen = [], set()
        for job_id in newest_first(set(ids) | set(mine[:limit]))[:limit]:
            job = self.get(job_id)
            if job is not None and job_id not in seen:
                seen.add(job_id)
                out.append(job)
        answer: dict[str, Any] = {"jobs": out, "stored": f"s3://{self.jobs_bucket}/jobs/" if self.store else None}
        if self.store is None:
            answer["note"] = NO_STORE_NOTE
        if error:
            answer["error"] = f"job history not readable: {error}"
        return answer

    def _history_ids(self, limit: int) -> tuple[builtins.list[str], str | None]:
        if self.store is None:
            return [], None
        now = self.clock()
        if self._history is not None and now - self._history[0] < HISTORY_TTL_S:
            return self._history[1], self._history[2]
        ids, error = self.store.recent_ids(limit)
        self._history = (now, ids, error)
        return ids, error

    def _decorate(self, job: dict) -> dict:
        """Progress with its ETA and percentage, and why it stopped (in words)."""
        progress = job.get("progress")
        if isinstance(progress, dict):
            running = job.get("status") in ("running", "submitted")
            progress["etaSeconds"] = eta_seconds(progress.get("done"), progress.get("total"),
                                                 progress.get("startedEpoch"), time.time()) if running else None
            total = progress.get("total")
            if total:
                progress["percent"] = round(100 * min(progress.get("done") or 0, total) / total, 1)
        if not job.get("title") and job.get("kind"):  # a job started outside the API (reprocess.py)
            try:
                job["title"] = get_kind(job["kind"]).title
            except Exception:
                job["title"] = job["kind"]
        summary = job.get("summary") or {}
        if not job.get("stoppedBy") and summary.get("stopped_by"):
            job["stoppedBy"] = summary["stopped_by"]
        return job

    # ---- bookkeeping -----------------------------------------------------------------------------
    def _trim(self) -> None:
        done = [k for k, j in self._jobs.items() if j["status"] not in ("queued", "running")]
        while len(self._jobs) > MAX_JOBS_KEPT and done:
            self._jobs.pop(done.pop(0), None)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            if job_id in self._jobs:
                self._jobs[job_id].update(fields)
