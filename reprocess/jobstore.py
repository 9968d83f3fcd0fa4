"""Operator jobs in S3: the one owner of the job record's format and keys.

The operator API starts jobs (a drain, a redrive of parked messages, and whatever kinds
``reprocess.jobkinds`` registers); they run in the API's process locally or in the reprocess
Lambda on AWS. Either way their record lives in the jobs bucket, so history survives a page
reload, an API restart and a Lambda cold start, and any API container can answer for any job:

    jobs/<jobId>/job.json      what was asked, by whom (the API writes it once)
    jobs/<jobId>/status.json   status, progress, summary (the runner writes it as it goes)
    jobs/<jobId>/cancel.json   a cancel request: who, when (the API writes it; the runner polls)

Job ids are 32 hex characters that sort by creation time (milliseconds first), so the newest
jobs are the last keys of a listing. The bucket expires ``jobs/`` after 7 days (serverless.yml).
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from streamkit.awsclient import describe_aws_error

JOB_ID = re.compile(r"[0-9a-f]{32}")
PREFIX = "jobs/"
FINAL_STATUSES = ("succeeded", "finished-with-failures", "cancelled", "failed")
# what the runner writes (status.json); job.json never holds them, so it cannot contradict them
STATUS_FIELDS = ("status", "startedAt", "finishedAt", "durationS", "progress", "summary", "stoppedBy", "error")


def new_job_id(now: float | None = None) -> str:
    """Time-ordered: 12 hex digits of epoch milliseconds, then 20 random ones."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{uuid.uuid4().hex[:20]}"


def key(job_id: str, part: str) -> str:
    return f"{PREFIX}{job_id}/{part}.json"


def status_of(summary: dict, *, cancelled: bool = False) -> str:
    """A finished run's status from its summary (``exit_code`` 0 / 1 / 2, ``error``)."""
    if summary.get("error") or summary.get("exit_code") == 2:
        return "failed"
    if cancelled:
        return "cancelled"
    return "succeeded" if summary.get("exit_code") == 0 else "finished-with-failures"


def eta_seconds(done: int | None, total: int | None, started_at: float | None, now: float) -> float | None:
    """Seconds left at the rate so far; None before the first item or without a total."""
    if not done or not total or started_at is None or done >= total:
        return 0.0 if done and total and done >= total else None
    elapsed = max(0.0, now - started_at)
    return round(elapsed / done * (total - done), 1)


class JobStore:
    """Job records in ``bucket`` (see the module docstring). ``s3`` is a boto3 client or a
    zero-argument factory. Reads never raise: a missing or unreadable object is ``None``."""

    def __init__(self, bucket: str, s3: Any):
        self.bucket = bucket
        self._s3 = s3

    @property
    def s3(self) -> Any:
        if callable(self._s3) and not hasattr(self._s3, "put_object"):
            self._s3 = self._s3()
        return self._s3

    def where(self, job_id: str) -> str:
        return f"s3://{self.bucket}/{PREFIX}{job_id}/"

    # ---- writing -----------------------------------------------------------------------------
    def _put(self, job_id: str, part: str, data: dict) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key(job_id, part), ContentType="application/json",
                           Body=json.dumps(data, default=str).encode())

    def save_job(self, job: dict) -> None:
        """What was asked and by whom (written once, when the job starts)."""
        self._put(job["jobId"], "job", {k: v for k, v in job.items() if k not in STATUS_FIELDS})

    def save_status(self, job_id: str, status: dict) -> None:
        """Status, progress and summary (the runner, as it goes)."""
        self._put(job_id, "status", {**status, "jobId": job_id})

    def request_cancel(self, job_id: str, request: dict) -> None:
        self._put(job_id, "cancel", request)

    # ---- reading -----------------------------------------------------------------------------
    def _get(self, job_id: str, part: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key(job_id, part))["Body"].read()
            data = json.loads(body)
        except Exception:
            return None
        return data if isinstance(data, dict) else None

    def cancel_request(self, job_id: str) -> dict | None:
        return self._get(job_id, "cancel")

    def load(self, job_id: str) -> dict | None:
        """The job as one record (job.json, then status.json over it, then the cancel request);
        None when neither exists."""
        if not JOB_ID.fullmatch(job_id or ""):
            return None
        job, status = self._get(job_id, "job"), self._get(job_id, "status")
        if job is None and status is None:
            return None
        merged = {**(job or {"jobId": job_id}), **(status or {})}
        if status is None:  # the runner has not written yet: a Lambda-run job waits for its invoke
            merged["status"] = "submitted" if merged.get("runner") == "lambda" else "queued"
        cancel = self._get(job_id, "cancel")
        if cancel is not None:
            merged["cancelRequested"] = cancel
        merged["stored"] = self.where(job_id)
        return merged

    def recent_ids(self, limit: int = 20) -> tuple[list[str], str | None]:
        """The ``limit`` newest job ids (newest first) and an error, if the listing failed."""
        ids: list[str] = []
        token = None
        try:
            for _ in range(20):  # jobs expire after 7 days: a few pages at most
                kw: dict[str, Any] = {"ContinuationToken": token} if token else {}
                resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=PREFIX, Delimiter="/", **kw)
                ids += [p["Prefix"][len(PREFIX):].rstrip("/") for p in resp.get("CommonPrefixes") or []]
                token = resp.get("NextContinuationToken")
                if not token:
                    break
        except Exception as exc:
            return [], describe_aws_error(exc)
        ids = sorted(i for i in ids if JOB_ID.fullmatch(i))
        return ids[::-1][:limit], None


class CancelPoll:
    """``should_stop()`` for a runner: asks the store for a cancel request at most every
    ``every_s`` seconds (a HEAD-sized GET), then remembers the answer."""

    def __init__(self, store: JobStore | None, job_id: str | None, *, every_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.job_id, self.every_s, self.clock = store, job_id, every_s, clock
        self._last = float("-inf")
        self._reason: str | None = None

    def __call__(self) -> str | None:
        if self._reason is not None or self.store is None or not self.job_id:
            return self._reason
        now = self.clock()
        if now - self._last < self.every_s:
            return None
        self._last = now
        request = self.store.cancel_request(self.job_id)
        if request is not None:
            self._reason = cancelled_by(request)
        return self._reason


def cancelled_by(request: dict) -> str:
    """``cancelled by <who> at <when>``: how a cancelled job says why it stopped."""
    who = (request.get("by") or {}).get("display") or "an operator"
    at = request.get("at")
    return f"cancelled by {who}" + (f" at {at}" if at else "")
