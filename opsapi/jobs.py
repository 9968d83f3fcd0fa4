"""Reprocess jobs: an in-process thread running ``reprocess.worker.drain`` locally, or an
asynchronous invoke of the reprocess Lambda when ``REPROCESS_FUNCTION_NAME`` is set.

Job records live in memory (this process). In AWS the summary is the reprocess Lambda's
result; with ``InvocationType=Event`` nobody waits for it, so the contract is that the
reprocess Lambda writes it to ``s3://$JOBS_BUCKET/jobs/<jobId>.json`` (serverless.yml grants
that prefix) and this API reads it from there, from any container. Until that object
exists a job is ``submitted``. See docs/operator-api.md.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from streamkit.awsclient import ClientCache, describe_aws_error
from streamkit.timefmt import now_iso

MAX_JOBS_KEPT = 200
JOB_ID = re.compile(r"[0-9a-f]{32}")


def summary_key(job_id: str) -> str:
    """Where the reprocess Lambda stores a job's summary in JOBS_BUCKET."""
    return f"jobs/{job_id}.json"


def status_of(summary: dict) -> str:
    if summary.get("error") or summary.get("exit_code") == 2:
        return "failed"
    return "succeeded" if summary.get("exit_code") == 0 else "finished-with-failures"


class JobConflict(Exception):
    """A local job for this consumer is already running (two drains of one queue in one process)."""


class JobRunner:
    """Starts jobs and keeps their status; thread-safe."""

    def __init__(self, *, clients: ClientCache, function_name: str | None = None,
                 drain: Callable[..., Any] | None = None, on_finish: Callable[[str], None] | None = None,
                 drain_options: dict | None = None, jobs_bucket: str | None = None):
        self.clients = clients
        self.function_name = function_name
        self.jobs_bucket = jobs_bucket
        self._drain = drain  # None: reprocess.worker.drain, imported in the job thread
        self.on_finish = on_finish or (lambda consumer: None)
        self.drain_options = drain_options or {}
        self._lock = threading.Lock()
        self._jobs: dict[str, dict] = {}
        self._threads: dict[str, threading.Thread] = {}

    @property
    def remote(self) -> bool:
        return bool(self.function_name)

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            job = json.loads(json.dumps(job, default=str)) if job else None
        if self.remote and (job is None or job["status"] == "submitted"):
            stored = self._stored_summary(job_id)
            if stored is not None:
                job = job or {"jobId": job_id, "consumer": stored.get("consumer"), "runner": "lambda",
                              "request": None, "createdAt": None, "startedAt": None}
                job.update(status=status_of(stored), summary=stored, error=stored.get("error"),
                           summaryObject=f"s3://{self.jobs_bucket}/{summary_key(job_id)}")
        return job

    def _stored_summary(self, job_id: str) -> dict | None:
        """The summary the reprocess Lambda wrote for ``job_id``, or None (not yet, or unreadable)."""
        if not self.jobs_bucket or not JOB_ID.fullmatch(job_id):
            return None
        try:
            body = self.clients.get("s3").get_object(Bucket=self.jobs_bucket, Key=summary_key(job_id))["Body"].read()
            data = json.loads(body)
        except Exception:
            return None
        return data if isinstance(data, dict) else None

    def running(self, consumer: str) -> dict | None:
        with self._lock:
            for job in self._jobs.values():
                if job["consumer"] == consumer and job["status"] in ("queued", "running"):
                    return dict(job)
        return None

    def list(self) -> list[dict]:
        with self._lock:
            return [json.loads(json.dumps(j, default=str)) for j in self._jobs.values()]

    def start(self, consumer: str, *, max_messages: int | None, mode: str | None, dry_run: bool,
              concurrency: int = 1) -> dict:
        job_id = uuid.uuid4().hex
        job = {
            "jobId": job_id,
            "consumer": consumer,
            "request": {"max": max_messages, "mode": mode, "dryRun": dry_run, "concurrency": concurrency},
            "runner": "lambda" if self.remote else "local",
            "status": "queued",
            "createdAt": now_iso(),
            "startedAt": None,
            "finishedAt": None,
            "summary": None,
            "error": None,
        }
        with self._lock:
            if not self.remote and any(j["consumer"] == consumer and j["status"] in ("queued", "running")
                                       for j in self._jobs.values()):
                raise JobConflict(f"a reprocess job for {consumer} is already running")
            self._jobs[job_id] = job
            self._trim()
        if self.remote:
            self._invoke(job)
        else:
            thread = threading.Thread(target=self._run_local, args=(job_id,), name=f"reprocess-{job_id[:8]}",
                                      daemon=True)
            self._threads[job_id] = thread
            thread.start()
        return self.get(job_id) or job

    def wait(self, job_id: str, timeout_s: float) -> dict | None:
        """Join a local job's thread (tests, shutdown)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout_s)
        return self.get(job_id)

    def _trim(self) -> None:
        done = [k for k, j in self._jobs.items() if j["status"] not in ("queued", "running")]
        while len(self._jobs) > MAX_JOBS_KEPT and done:
            self._jobs.pop(done.pop(0), None)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            self._jobs[job_id].update(fields)

    def _invoke(self, job: dict) -> None:
        req = job["request"]
        payload = {"consumer": job["consumer"], "max": req["max"], "mode": req["mode"], "dryRun": req["dryRun"],
                   "concurrency": req["concurrency"], "jobId": job["jobId"]}
        try:
            resp = self.clients.get("lambda").invoke(
                FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps(payload).encode()
            )
        except Exception as exc:
            self._update(job["jobId"], status="failed", error=f"invoke failed: {describe_aws_error(exc)}",
                         finishedAt=now_iso())
            return
        self._update(job["jobId"], status="submitted", startedAt=now_iso(),
                     invokeStatusCode=resp.get("StatusCode"), function=self.function_name,
                     note=f"runs in the reprocess Lambda; its summary appears here once it is stored "
                          f"at s3://{self.jobs_bucket}/{summary_key(job['jobId'])}" if self.jobs_bucket else
                          "runs in the reprocess Lambda; its summary is in that function's logs (JOBS_BUCKET unset)")

    def _run_local(self, job_id: str) -> None:
        job = self.get(job_id) or {}
        req = job.get("request") or {}
        consumer = job.get("consumer", "")
        self._update(job_id, status="running", startedAt=now_iso())
        started = time.monotonic()
        try:
            drain: Callable[..., Any]
            if self._drain is not None:
                drain = self._drain
            else:
                from reprocess.worker import drain  # heavy: only in the job thread

            def progress(summary: Any) -> None:
                self._update(job_id, progress=summary.to_dict() if hasattr(summary, "to_dict") else summary)

            summary = drain(
                consumer,
                max_messages=req.get("max"),
                mode=req.get("mode"),
                dry_run=bool(req.get("dryRun")),
                concurrency=int(req.get("concurrency") or 1),
                progress=progress,
                **self.drain_options,
            )
            result = summary.to_dict()
            status = status_of(result)
            self._update(job_id, status=status, summary=result, finishedAt=now_iso(),
                         durationS=round(time.monotonic() - started, 3))
        except Exception as exc:  # ConfigError and anything unexpected: the job says why
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:1000],
                         finishedAt=now_iso(), durationS=round(time.monotonic() - started, 3))
        finally:
            self.on_finish(consumer)
