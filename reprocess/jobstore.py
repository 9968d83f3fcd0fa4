"""Operator jobs in S3: the one owner of the job record's format and keys.

The operator API starts jobs (a drain, a redrive of parked messages, and whatever kinds
``reprocess.jobkinds`` registers); they run in the API's process locally or in the reprocess
Lambda on AWS. Either way their record lives in the jobs bucket, so history survives a page
reload, an API restart and a Lambda cold start, and any API container can answer for any job:

    jobs/<jobId>/job.json      what was asked, by whom (the API writes it once)
    jobs/<jobId>/status.json   status, progress, summary (the runner writes it as it goes)
    jobs/<jobId>/cancel.json   a cancel request: who, when (the API or ``reprocess.py jobs cancel``
                               writes it; a drain's runner and a backfill's or rewind's parts poll it)

This module is the one owner of ``cancel.json`` (``cancel_key``, ``cancel_request``,
``cancelled_by``): the backfill and rewind parts (``reprocess.job``) read and write it here.

A backfill or rewind keeps its manifest and checkpoints beside these (``reprocess.checkpoints``:
``manifest.json``, ``parts/``). One started by the operator API has all of them; one started
by ``reprocess.py`` (or the rewind schedule) has only the manifest and its parts, and ``load``
answers for it from them: kind, consumer, options, status and progress from its parts' states,
runner ``cli``, no caller.

Job ids made here are 32 hex characters that sort by creation time (milliseconds first), so
the newest jobs are the last keys of a listing; the CLI names its jobs the same way. A job
named by hand (``--job-id nightly``) is listed after them. The bucket expires ``jobs/`` after
7 days (serverless.yml).
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from streamkit.awsclient import describe_aws_error
from streamkit.timefmt import now_iso

from .checkpoints import JOB_ID as ANY_JOB_ID
from .checkpoints import manifest_key, summary_key

JOB_ID = re.compile(r"[0-9a-f]{32}")  # what new_job_id makes (the API's jobs, the CLI's unnamed ones)
PREFIX = "jobs/"
FINAL_STATUSES = ("succeeded", "finished-with-failures", "cancelled", "failed")
# a backfill's or rewind's summary while its parts are not all finished (reprocess.job.Job.summary)
UNFINISHED_JOB_STATUSES = ("running", "paused")
EARLIEST_MS = 1_577_836_800_000  # 2020-01-01: a time-ordered id starts at or after it
STALE_STATUS_S = 30.0  # a running job's status.json older than this: read its parts instead
CHECKPOINTED_KINDS = ("backfill", "rewind")  # kinds with a manifest and parts (reprocess.checkpoints)
# what the runner writes (status.json); job.json never holds them, so it cannot contradict them
STATUS_FIELDS = ("status", "startedAt", "finishedAt", "durationS", "progress", "summary", "stoppedBy", "error")


def new_job_id(now: float | None = None) -> str:
    """Time-ordered: 12 hex digits of epoch milliseconds, then 20 random ones."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{uuid.uuid4().hex[:20]}"


def time_ordered(job_id: str, now: float | None = None) -> bool:
    """Was ``job_id`` made by ``new_job_id`` (its first 12 hex digits a plausible time)?"""
    if not JOB_ID.fullmatch(job_id or ""):
        return False
    ms = int(job_id[:12], 16)
    return EARLIEST_MS <= ms <= ((time.time() if now is None else now) + 86_400) * 1000


def newest_first(job_ids: Iterable[str]) -> list[str]:
    """Time-ordered ids newest first, then the ones named by hand (by name)."""
    now = time.time()
    ids = set(job_ids)
    timed = sorted((i for i in ids if time_ordered(i, now)), reverse=True)
    return timed + sorted(ids - set(timed))


def key(job_id: str, part: str) -> str:
    return f"{PREFIX}{job_id}/{part}.json"


def cancel_key(job_id: str) -> str:
    return key(job_id, "cancel")


def cancel_request(by: dict | str | None, at: str | None = None) -> dict:
    """The body of ``cancel.json``: ``{"by": <caller>, "at": iso}``. ``by`` is the API's caller
    (``opsapi.security.caller_of``: arn, source, display, ...) or words (``"reprocess.py jobs
    cancel"``), which become ``{"display": words}``."""
    who = dict(by) if isinstance(by, dict) else {"display": by or "an operator"}
    return {"by": who, "at": at or now_iso()}


def status_of(summary: dict, *, cancelled: bool = False) -> str:
    """A run's status from its summary (``exit_code`` 0 / 1 / 2, ``error``); a backfill's or
    rewind's summary whose parts are still going says so (``running``, ``paused``)."""
    if summary.get("error") or summary.get("exit_code") == 2:
        return "failed"
    if summary.get("status") in UNFINISHED_JOB_STATUSES:
        return summary["status"]
    if cancelled or summary.get("status") == "cancelled":
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
        """Write ``cancel.json`` (``request``: made by ``cancel_request``)."""
        self._put(job_id, "cancel", cancel_request(request.get("by"), request.get("at")))

    # ---- reading -----------------------------------------------------------------------------
    def _get(self, job_id: str, part: str) -> dict | None:
        return self._get_key(key(job_id, part))

    def _get_key(self, object_key: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=object_key)["Body"].read()
            data = json.loads(body)
        except Exception:
            return None
        return data if isinstance(data, dict) else None

    def cancel_request(self, job_id: str) -> dict | None:
        return self._get(job_id, "cancel")

    def load(self, job_id: str) -> dict | None:
        """The job as one record (job.json, then status.json over it, then the cancel request);
        a backfill or rewind without them (started by ``reprocess.py``), or whose status.json
        is not final and not written lately (its Lambda coordinator has gone; its parts go on),
        from its manifest and parts. None when there is no such job."""
        if not ANY_JOB_ID.fullmatch(job_id or ""):
            return None
        job, status = self._get(job_id, "job"), self._get(job_id, "status")
        cancel = self._get(job_id, "cancel")
        if job is None and status is None:
            merged = self._from_manifest(job_id, None, cancel)
            if merged is None:
                return None
        else:
            merged = {**(job or {"jobId": job_id}), **(status or {})}
            if status is None:  # the runner has not written yet: a Lambda-run job waits for its invoke
                merged["status"] = "submitted" if merged.get("runner") == "lambda" else "queued"
            withdrawn = merged.get("status") == "cancelled" and cancel is None  # resumed since (--resume)
            if merged.get("kind") in CHECKPOINTED_KINDS and (_stale(status) or withdrawn):
                merged = self._from_manifest(job_id, merged, cancel) or merged
        if cancel is not None:
            merged["cancelRequested"] = cancel
        merged["stored"] = self.where(job_id)
        return merged

    def _from_manifest(self, job_id: str, record: dict | None, cancel: dict | None) -> dict | None:
        """A backfill's or rewind's record from its manifest and its parts' states (over
        ``record``, the API's, when there is one); None without a manifest."""
        manifest = self._get_key(manifest_key(job_id))
        if manifest is None or not manifest.get("parts"):
            return None
        from .checkpoints import S3Store
        from .job import Job, progress_of

        job = Job(S3Store(self.bucket, self.s3), manifest)
        try:
            summary = job.summary()
        except Exception as exc:
            return {**(record or {}), "jobId": job_id, "note": f"parts not readable: {describe_aws_error(exc)}"}
        stopped = summary.get("stopped_by")
        if summary["status"] == "cancelled" and cancel is not None:
            stopped = cancelled_by(cancel)
        base = record or {
            "jobId": job_id, "kind": job.kind, "consumer": job.consumer,
            "request": {k: v for k, v in (manifest.get("options") or {}).items() if k not in ("kind", "consumer")},
            "runner": "cli", "createdAt": manifest.get("createdAt"), "total": None, "confirmedCount": None,
            "caller": {"arn": None, "source": "cli", "display": "reprocess.py (no caller recorded)"},
            "note": (f"started outside the operator API (reprocess.py or a schedule): follow it with "
                     f"'reprocess.py jobs show {job_id} --follow'"),
        }
        done, total = progress_of(summary)
        finished = self._get_key(summary_key(job_id)) if summary["status"] in FINAL_STATUSES else None
        return {**base, "status": summary["status"], "summary": summary, "stoppedBy": stopped,
                "progress": {**(base.get("progress") or {}), "done": done, "total": base.get("total") or total,
                             "updatedAt": now_iso()},
                "finishedAt": (finished or {}).get("finishedAt")}

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
        return newest_first(i for i in ids if ANY_JOB_ID.fullmatch(i))[:limit], None


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


def may_change(record: dict) -> bool:
    """A finished job whose record can still change: a cancelled backfill or rewind (an
    operator's ``--resume`` withdraws the cancel and goes on from its checkpoints)."""
    return record.get("status") == "cancelled" and record.get("kind") in CHECKPOINTED_KINDS


def _stale(status: dict | None) -> bool:
    """A status.json nobody keeps up to date: absent, or not final and not written lately."""
    if status is None:
        return True
    if status.get("status") in FINAL_STATUSES:
        return False
    from streamkit.timefmt import parse_iso

    written = parse_iso(((status.get("progress") or {}).get("updatedAt")) or status.get("startedAt") or "")
    return written is None or time.time() - written.timestamp() > STALE_STATUS_S


def cancelled_by(request: dict) -> str:
    """``cancelled by <who> at <when>``: how a cancelled job says why it stopped."""
    who = (request.get("by") or {}).get("display") or "an operator"
    at = request.get("at")
    return f"cancelled by {who}" + (f" at {at}" if at else "")
