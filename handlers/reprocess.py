"""The reprocess Lambda: drain one consumer's failure queue on demand (or on a schedule).

Event: {"consumer": "search-indexer", "max"?: int, "mode"?: "replay"|"latest",
        "dryRun"?: bool, "concurrency"?: int, "maxAttempts"?: int}
Result: the worker's summary dict (``exit_code`` 0/1 inside it; 2 with ``error`` for a bad
event or configuration). The time budget is the Lambda's remaining time minus a margin, so
the run stops taking messages before the function would be killed mid-batch.
Queues come from <KEY>_FAILURE_QUEUE_URL / <KEY>_PARKING_QUEUE_URL (serverless.yml).
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from reprocess.summary import EXIT_USAGE
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError

# Stop taking messages this long before the Lambda deadline: a round of 10 x concurrency
# records plus its sends and deletes must fit in it.
MARGIN_MS = int(os.environ.get("REPROCESS_MARGIN_MS", "15000"))


_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def handler(event: Any, context: Any) -> dict:
    result = _run(event, context)
    job_id = event.get("jobId") if isinstance(event, dict) else None
    if job_id is not None:
        _store_job_summary(job_id, result)
    return result


def _store_job_summary(job_id: Any, result: dict) -> None:
    """The operator API started this run asynchronously: leave the summary where any API
    container can read it (``s3://$JOBS_BUCKET/jobs/<jobId>.json``)."""
    bucket = os.environ.get("JOBS_BUCKET") or os.environ.get("FAILURE_BUCKET")
    if not bucket or not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        result.setdefault("notes", []).append("job summary not stored: no JOBS_BUCKET or an invalid jobId")
        return
    import boto3

    boto3.client("s3").put_object(
        Bucket=bucket,
        Key=f"jobs/{job_id}.json",
        Body=json.dumps({**result, "jobId": job_id}, default=str).encode(),
        ContentType="application/json",
    )


def _run(event: Any, context: Any) -> dict:
    from reprocess.worker import drain

    if not isinstance(event, dict) or not isinstance(event.get("consumer"), str):
        return {"error": 'event must be {"consumer": NAME, "max"?, "mode"?, "dryRun"?}', "exit_code": EXIT_USAGE}
    options: dict[str, Any] = {}
    if event.get("maxAttempts") is not None:
        options["max_attempts"] = int(event["maxAttempts"])
    try:
        summary = drain(
            event["consumer"],
            max_messages=int(event["max"]) if event.get("max") is not None else None,
            mode=event.get("mode"),
            dry_run=bool(event.get("dryRun", False)),
            concurrency=int(event.get("concurrency", 1)),
            deadline=Deadline(context, margin_ms=MARGIN_MS) if context is not None else None,
            wait_time_s=1,
            **options,
        )
    except (ConfigError, ValueError, TypeError) as exc:
        return {"consumer": event.get("consumer"), "error": str(exc), "exit_code": EXIT_USAGE}
    return summary.to_dict()
