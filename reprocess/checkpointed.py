"""Backfill and rewind as operator job kinds (``reprocess.jobkinds``): the operator API starts,
follows and cancels them as it does a drain, and the reprocess Lambda runs them.

The API's body is the CLI's options in their wire names, validated by ``BackfillOptions`` /
``RewindOptions`` (one set of limits, the same messages):

    POST /consumers/search-indexer/jobs/backfill   {"segments": 8, "rate": 200, "dryRun": false}
    POST /consumers/crm-sync/jobs/rewind           {"since": "10m", "until": "...", "window": "15m",
                                                    "mode": "latest"}

A rewind's ``since``/``until`` are fixed when the request is read (``until`` defaults to that
moment), so "10 minutes ago" is the operator's ten minutes however late the job starts, and
the windows confirmed are the windows run. The count to confirm is the table's item count
(DescribeTable's, refreshed by DynamoDB about every 6 hours) for a backfill and the number of
windows for a rewind; it caps nothing: it is the progress' total ("1,234 of 10,000 items",
"3 of 8 windows"). A request the job could not run (a ``since`` past the stream's retention,
an ``until`` in the future, no table) is refused before anything starts (HTTP 400).

The job runs under the API job's id, so its manifest and checkpoints sit beside the job's
record (``jobs/<id>/manifest.json``, ``parts/``) and the API's cancel request
(``jobs/<id>/cancel.json``, ``reprocess.jobstore``'s) is the marker its parts stop at. A
cancelled job keeps its checkpoints: ``reprocess.py <kind> --consumer X --resume <id>``
withdraws the cancel and goes on from them.

Where it runs: in the reprocess Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set, a jobs bucket) the
run fans the parts out to their own invocations (``reprocess.remote.launch``: one per segment
or shard lineage, each continued past 15 minutes) and follows them from their checkpoints in
S3 until they finish or this invocation's time runs out; the parts go on either way, and the
API reads their progress from the bucket. Elsewhere (the local API) the parts run on threads
of this process. A dry run always runs here (a backfill's only plans; a rewind's reads).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .jobkinds import JobContext, JobKind, Plan, register
from .options import BACKFILL_API_FIELDS, REWIND_API_FIELDS, BackfillOptions, RewindOptions

MAX_CONFIRM = 10**12  # a table's item count, a long rewind's windows


def _backfill_options(request: Mapping[str, Any], consumer: str) -> BackfillOptions:
    return BackfillOptions.from_wire(request, consumer=consumer, allowed=BACKFILL_API_FIELDS)


def _rewind_options(request: Mapping[str, Any], consumer: str, now: datetime | None = None) -> RewindOptions:
    return RewindOptions.from_wire(request, consumer=consumer, allowed=REWIND_API_FIELDS, now=now)


def _request(options: BackfillOptions | RewindOptions) -> dict:
    return {k: v for k, v in options.to_wire().items() if k not in ("kind", "consumer")}


# ---- reading the request ----------------------------------------------------------------------
def parse_backfill(body: Mapping[str, Any], consumer: str) -> dict:
    return _request(_backfill_options(body, consumer))


def parse_rewind(body: Mapping[str, Any], consumer: str) -> dict:
    """Relative times (``"10m"``) become absolute here, and a missing ``until`` is now."""
    now = datetime.now(UTC)
    options = _rewind_options(body, consumer, now)
    request = _request(options)
    if options.until is None:
        from streamkit.timefmt import iso

        request["until"] = iso(now)
    return request


# ---- the count to confirm ---------------------------------------------------------------------
def _aws_failure(exc: Exception) -> bool:
    """A ``JobError`` raised from an AWS call (``raise ... from exc``) is not the request's
    fault: the count is unknown but the job may still run. Any other is a bad request."""
    return exc.__cause__ is not None


def plan_backfill(clients: Any, consumer: str, request: dict) -> Plan:
    from . import jobrun
    from .job import JobError

    options = _backfill_options(request, consumer).resolved()
    try:
        _, source = jobrun.plan_backfill(options, clients)
    except JobError as exc:
        if not _aws_failure(exc):
            raise
        return Plan(None, f"items in {options.users_table}", error=str(exc))
    estimate = source.get("estimate") or {}
    what = (f"items in {source['table']} (DynamoDB's ItemCount, refreshed about every 6 hours; "
            f"about {estimate.get('readCapacityUnits', '?')} read units"
            + (f", {estimate['secondsAtRate']} s at {options.rate} units/s" if estimate.get("secondsAtRate") else "")
            + f"; {options.segments} segment(s))")
    error = None
    if not source["itemCount"]:
        error = ("DynamoDB reports 0 items; its count lags up to 6 hours behind the table: if the table is "
                 "not empty, run 'reprocess.py backfill' from a shell, or confirm any count of 1 or more")
    return Plan(source["itemCount"], what, error=error)


def plan_rewind(clients: Any, consumer: str, request: dict) -> Plan:
    from . import jobrun, rewind
    from .job import JobError

    now = datetime.now(UTC)
    options = _rewind_options(request, consumer, now).resolved()
    assert options.since is not None and options.until is not None  # parse_rewind fixed both
    windows = rewind.windows(options.since, options.until, options.window_s)
    span = f"window(s) of {options.window_s} s from {request['since']} to {request['until']}"  # after the count
    try:
        parts, _ = jobrun.plan_rewind(options, clients, now)
    except JobError as exc:  # past retention, in the future, no stream: 400; AWS unreadable: count stands
        if not _aws_failure(exc):
            raise
        return Plan(windows, f"{span} ({options.effective_mode} mode)", error=str(exc))
    return Plan(windows, f"{span} ({len(parts)} shard lineage(s), {options.effective_mode} mode)")


# ---- running ----------------------------------------------------------------------------------
def _in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def run_backfill(consumer: str, request: dict, ctx: JobContext) -> dict:
    return _run(_backfill_options(request, consumer), ctx)


def run_rewind(consumer: str, request: dict, ctx: JobContext) -> dict:
    return _run(_rewind_options(request, consumer), ctx)


def _store(ctx: JobContext) -> Any:
    from .checkpoints import open_store

    return open_store(f"s3://{ctx.jobs_bucket}" if ctx.jobs_bucket else None)


def _run(options: BackfillOptions | RewindOptions, ctx: JobContext) -> dict:
    store = _store(ctx)
    if _in_lambda() and store.remote() and not options.dry_run:
        summary = _fan_out(options, ctx, store)
    else:
        summary = _here(options, ctx, store)
    if summary.get("status") == "cancelled":  # say who, as a drain does
        from .jobstore import cancel_key, cancelled_by

        request = store.get(cancel_key(ctx.job_id)) if ctx.job_id else None
        reason = ctx.should_stop() if ctx.should_stop is not None else None
        summary["stopped_by"] = reason or (cancelled_by(request) if request else "cancelled")
    return summary


def _report(ctx: JobContext, summary: dict) -> None:
    from .job import progress_of

    done, _ = progress_of(summary)
    ctx.report(done, summary)


def _here(options: BackfillOptions | RewindOptions, ctx: JobContext, store: Any) -> dict:
    """Every part on threads of this process. The operator's cancel (``ctx.should_stop``) is
    heard by the parts at their next checkpoint, and left as the job's cancel marker."""
    from .job import PartState
    from .jobrun import run_job

    opened: list[Any] = []
    states: dict[str, PartState] = {}
    lock = threading.Lock()

    def on_open(job: Any) -> None:
        job.cancel_heard = ctx.should_stop
        with lock:
            opened.append(job)
            states.update({s.part: s for s in job.states()})

    def progress(state: PartState) -> None:  # on the part's own thread: a copy, then the sum
        copy = PartState.from_dict(state.part, state.to_dict())
        with lock:
            states[state.part] = copy
            summary = opened[0].summary(list(states.values())) if opened else None
        if summary is not None:
            _report(ctx, summary)

    summary = run_job(options, store=store, job_id=ctx.job_id, deadline=ctx.deadline, progress=progress,
                      on_open=on_open, handle_record=ctx.options.get("handle_record"))
    reason = ctx.should_stop() if ctx.should_stop is not None else None
    if reason and opened and opened[0].cancel_requested() is None:  # an API without a bucket: keep it here
        opened[0].cancel(by="the operator API (its job record was in memory only)")
    _report(ctx, summary)
    return summary


def _fan_out(options: BackfillOptions | RewindOptions, ctx: JobContext, store: Any) -> dict:
    """One invocation of this function per part; follow them while this invocation has time."""
    from streamkit.awsclient import ClientCache

    from .jobrun import CLIENT_OPTIONS
    from .remote import follow, launch

    clients = ClientCache(None, **CLIENT_OPTIONS)
    job, problems = launch(options, store=store, clients=clients, function=os.environ["AWS_LAMBDA_FUNCTION_NAME"],
                           job_id=ctx.job_id)

    def until() -> bool:  # the parts see the cancel marker themselves; follow until they stop
        return ctx.deadline is not None and ctx.deadline.remaining_s() < 10

    summary = follow(job, progress=lambda s: _report(ctx, s), until=until)
    if summary.get("status") in ("running", "paused") and until():
        summary.setdefault("notes", []).append(
            "this invocation stopped following; the parts go on, and their progress is read from "
            f"{store.location}/jobs/{job.job_id}/")
    summary.setdefault("problems", []).extend(problems)
    return summary


def _dry(request: dict) -> bool:
    return bool(request.get("dryRun"))


register(JobKind(name="backfill", title="backfill from the table", parse=parse_backfill, plan=plan_backfill,
                 run=run_backfill, changes_nothing=_dry, limit_field=None, max_confirm=MAX_CONFIRM))
register(JobKind(name="rewind", title="rewind the stream", parse=parse_rewind, plan=plan_rewind,
                 run=run_rewind, changes_nothing=_dry, limit_field=None, max_confirm=MAX_CONFIRM))
