"""Backfill and rewind jobs in the reprocess Lambda: one invocation per part, continued past
the 15-minute limit, followed from the job store.

**The Lambda side** (``handle_event``; ``handlers/reprocess.py`` routes ``"kind": "backfill"``
and ``"kind": "rewind"`` here):

    {"kind": "backfill", "consumer": "search-indexer", "segments": 8}           plan and run it all
    {"kind": "rewind", "consumer": "crm-sync", "since": "75m", "until": "15m"}   (a schedule)
    {"kind": ..., "consumer": ..., "jobId": "<id>", "part": "3"}                 run one part
    {"kind": ..., "consumer": ..., "jobId": "<id>", "resume": true}              resume them all

An invocation runs until its parts finish or ``REPROCESS_MARGIN_MS`` before its deadline;
then, if work is left, it invokes the function again asynchronously with the same event and
``"continuation": n + 1`` (at most ``MAX_CONTINUATIONS``), after its last checkpoint was
saved. So a table of 100 million items depends on no laptop: parts hand over to themselves.

**The laptop side** (``launch`` + ``follow``; ``reprocess.py ... --remote``): plan the job
into the jobs bucket, invoke the reprocess Lambda once per part (``InvocationType=Event``),
then read the parts' states from the bucket until they finish. Ctrl-C stops following,
not the job; ``reprocess.py jobs show <id> --follow`` picks it up again and
``reprocess.py jobs cancel <id>`` stops it at the parts' next checkpoints.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from consumers.registry import stack_prefix
from streamkit.awsclient import ClientCache, describe_aws_error
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError

from .checkpoints import CheckpointStore, open_store
from .job import FINISHED, Job, PartState
from .jobrun import CLIENT_OPTIONS, execute, open_job, options_of
from .options import JobOptions, job_options_from_wire
from .summary import EXIT_USAGE

MAX_CONTINUATIONS = 1000  # 1000 x 15 minutes: ten days of one part; a runaway guard


def function_name(env: Mapping[str, str] | None = None) -> str:
    """``REPROCESS_FUNCTION_NAME``, else the stack's ``{service}-{stage}-reprocess``."""
    from .options import REPROCESS_FUNCTION_NAME

    env = os.environ if env is None else env
    return REPROCESS_FUNCTION_NAME.read(env) or f"{stack_prefix(env)}-reprocess"


def invoke_async(lam: Any, function: str, payload: dict) -> None:
    resp = lam.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())
    if resp.get("StatusCode") not in (202, 200):
        raise RuntimeError(f"invoke of {function} answered {resp.get('StatusCode')}")


def _store_for_lambda(clients: ClientCache) -> CheckpointStore:
    store = open_store(s3=clients.get("s3"))
    if not store.remote():
        raise ConfigError("backfill and rewind jobs in Lambda keep their checkpoints in S3: set JOBS_BUCKET "
                          "(serverless.yml sets it to the failure bucket)")
    return store


# ---- the Lambda side ------------------------------------------------------------------------
def handle_event(event: Any, context: Any, *, margin_ms: int, clients: ClientCache | None = None,
                 invoke: Callable[[str, dict], None] | None = None) -> dict:
    """Run what ``event`` asks; continue in a new invocation when time runs out."""
    clients = clients or ClientCache(None, **CLIENT_OPTIONS, pool=64)
    consumer = event.get("consumer") if isinstance(event, dict) else None
    try:
        options = job_options_from_wire(event)
        job_id, part = event.get("jobId"), event.get("part")
        continuation = event.get("continuation") or 0
        if part is not None and not isinstance(part, str):
            part = str(part)
        if not isinstance(continuation, int) or continuation < 0:
            raise ConfigError(f"continuation must be a count, got {continuation!r}")
        store = _store_for_lambda(clients)
        resume = job_id if (part is not None or event.get("resume")) else None
        if part is not None and not job_id:
            raise ConfigError("a part needs the jobId of its job")
        job = open_job(options, store=store, clients=clients, job_id=None if resume else job_id, resume=resume)
        if resume:
            options = options_of(job)
        deadline = Deadline(context, margin_ms=margin_ms) if context is not None else None
        summary = execute(job, options, clients=clients, parts=[part] if part is not None else None,
                          deadline=deadline)
    except ConfigError as exc:
        return {"consumer": consumer, "kind": event.get("kind") if isinstance(event, dict) else None,
                "error": str(exc), "exit_code": EXIT_USAGE}
    mine = [part] if part is not None else job.parts
    left = [s for s in job.states() if s.part in mine and s.status not in FINISHED and s.status != "failed"]
    if left and all(s.stopped_by == "time budget used" for s in left):
        summary["continued"] = _continue(event, job, part, continuation, context, clients, invoke)
    return summary


def _continue(event: dict, job: Job, part: str | None, continuation: int, context: Any, clients: ClientCache,
              invoke: Callable[[str, dict], None] | None) -> str:
    if continuation + 1 > MAX_CONTINUATIONS:
        return f"not continued: {MAX_CONTINUATIONS} continuations already (resume it by hand)"
    payload = {**event, "jobId": job.job_id, "continuation": continuation + 1}
    if part is None:
        payload["resume"] = True
    target = getattr(context, "invoked_function_arn", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if not target:
        return "not continued: no function to invoke (not in Lambda)"
    try:
        if invoke is not None:
            invoke(target, payload)
        else:
            invoke_async(clients.get("lambda"), target, payload)
    except Exception as exc:  # the checkpoint is saved: a person can resume it
        return f"not continued: invoke failed: {describe_aws_error(exc)}"
    return f"continuation {continuation + 1} invoked"


# ---- the laptop side --------------------------------------------------------------------------
def launch(options: JobOptions, *, store: CheckpointStore, clients: ClientCache, function: str,
           job_id: str | None = None, resume: str | None = None) -> tuple[Job, list[str]]:
    """Plan (or load) the job in ``store`` and invoke the Lambda once per unfinished part;
    returns the job and a note per part that could not be started."""
    if not store.remote():
        raise ConfigError("--remote runs the job in the reprocess Lambda, which keeps checkpoints in S3: set "
                          "JOBS_BUCKET (the stack's failure bucket) or pass --checkpoints s3://BUCKET")
    job = open_job(options, store=store, clients=clients, job_id=job_id, resume=resume)
    lam = clients.get("lambda")
    problems = []
    for state in job.states():
        if state.status in FINISHED:
            continue
        payload = {"kind": job.kind, "consumer": job.consumer, "jobId": job.job_id, "part": state.part}
        try:
            invoke_async(lam, function, payload)
        except Exception as exc:
            problems.append(f"part {state.part}: invoke of {function} failed: {describe_aws_error(exc)}")
    return job, problems


STALE_S = 180.0  # a paused part not picked up by its continuation for this long has stopped


def _stopped(state: PartState, now: float) -> bool:
    if state.status in FINISHED or state.status == "failed":
        return True
    if state.status == "paused" and state.updated_at:
        from streamkit.timefmt import parse_iso

        at = parse_iso(state.updated_at)
        return at is not None and now - at.timestamp() > STALE_S
    return False


def follow(job: Job, *, interval_s: float = 2.0, progress: Callable[[dict], None] | None = None,
           until: Callable[[], bool] | None = None) -> dict:
    """Read the parts' states until every part has finished, failed, or stayed paused for
    ``STALE_S`` (its continuation never came); or until ``until()``. The job's summary."""
    while True:
        states: list[PartState] = job.states()
        summary = job.summary(states)
        if progress is not None:
            progress(summary)
        if all(_stopped(s, time.time()) for s in states):
            return job.write_summary_if_finished(summary)
        if until is not None and until():
            return summary
        time.sleep(interval_s)
