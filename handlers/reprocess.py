"""The reprocess Lambda: drain one consumer's failure queue on demand (or on a schedule), or
run a part of a backfill or a rewind (``"kind": "backfill" | "rewind"``: ``reprocess.remote``).

Event: {"consumer": "search-indexer", "max"?: int, "mode"?: "replay"|"latest",
        "dryRun"?: bool, "concurrency"?: int, "maxAttempts"?: int, "jobId"?: str}
validated by ``reprocess.options.DrainOptions.from_wire`` (the limits the CLI and the
operator API use; an unknown field is an error).
Result: the worker's summary dict (``exit_code`` 0/1 inside it; 2 with ``error`` for a bad
event or configuration). The time budget is the Lambda's remaining time minus
``REPROCESS_MARGIN_MS`` (checked at cold start), so the run stops taking messages before
the function would be killed mid-batch.
Queues come from <KEY>_FAILURE_QUEUE_URL / <KEY>_PARKING_QUEUE_URL (serverless.yml).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from reprocess.options import JOB_KINDS, JOBS_BUCKET, LAMBDA_SETTINGS, DrainOptions
from reprocess.summary import EXIT_USAGE
from reprocess.worker import drain
from streamkit.awsclient import make_client
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError
from streamkit.settings import load

# Every setting the run reads, checked at cold start (one ConfigError naming each fix);
# REPROCESS_MARGIN_MS: stop taking messages this long before the Lambda deadline.
SETTINGS = load(LAMBDA_SETTINGS, owner="reprocess")
MARGIN_MS: int = SETTINGS["REPROCESS_MARGIN_MS"]


_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def handler(event: Any, context: Any) -> dict:
    kind = event.get("kind", "drain") if isinstance(event, dict) else "drain"
    if kind in JOB_KINDS:  # a backfill or a rewind: checkpoints and summary in the jobs bucket
        from reprocess.remote import handle_event

        return handle_event(event, context, margin_ms=MARGIN_MS)
    if kind != "drain":
        return {"consumer": event.get("consumer"), "error": f"kind must be one of drain, "
                f"{', '.join(JOB_KINDS)}, got {kind!r}", "exit_code": EXIT_USAGE}
    if isinstance(event, dict):
        event = {k: v for k, v in event.items() if k != "kind"}
    result = _run(event, context)
    job_id = event.get("jobId") if isinstance(event, dict) else None
    if job_id is not None:
        _store_job_summary(job_id, result)
    return result


def _store_job_summary(job_id: Any, result: dict) -> None:
    """The operator API started this run asynchronously: leave the summary where any API
    container can read it (``s3://$JOBS_BUCKET/jobs/<jobId>.json``)."""
    bucket = JOBS_BUCKET.read() or os.environ.get("FAILURE_BUCKET")
    if not bucket or not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        result.setdefault("notes", []).append("job summary not stored: no JOBS_BUCKET or an invalid jobId")
        return
    make_client("s3").put_object(
        Bucket=bucket,
        Key=f"jobs/{job_id}.json",
        Body=json.dumps({**result, "jobId": job_id}, default=str).encode(),
        ContentType="application/json",
    )


def _run(event: Any, context: Any) -> dict:
    consumer = event.get("consumer") if isinstance(event, dict) else None
    try:
        options = DrainOptions.from_wire(event)
        summary = drain(
            options=dataclasses.replace(options, wait_time_s=1),
            deadline=Deadline(context, margin_ms=MARGIN_MS) if context is not None else None,
        )
    except ConfigError as exc:
        return {"consumer": consumer, "error": str(exc), "exit_code": EXIT_USAGE}
    return summary.to_dict()
