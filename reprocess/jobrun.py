"""Starting, resuming and running backfill and rewind jobs (the CLI and the Lambda both call this).

    from reprocess.jobrun import run_job
    from reprocess.options import BackfillOptions, RewindOptions

    summary = run_job(BackfillOptions(consumer="search-indexer", segments=4))
    summary = run_job(RewindOptions.from_wire({"consumer": "crm-sync", "since": "10m"}))
    summary = run_job(options, resume="<jobId>")        # from its checkpoints

``run_job`` plans a new job (or loads one to resume), runs its parts (all of them, or the
ones named) on threads until they finish, the deadline comes, a cancel marker appears or
the caller sets ``stop``, and returns the job's summary (``exit_code`` inside). A backfill
dry run only plans: it reads the table's description (item count, size) and estimates the
read capacity; it scans nothing. A rewind dry run reads the window and counts its records
by event name, handling nothing.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from consumers.registry import get_consumer
from streamkit.awsclient import ClientCache
from streamkit.capture import FailureCapture
from streamkit.deadline import Deadline
from streamkit.errors import ConfigError
from streamkit.log import LazyLogger
from streamkit.record import StreamRecord

from . import backfill, rewind
from .checkpoints import CheckpointStore, open_store
from .feed import Feeder
from .job import Job, JobError, PartState, RunContext, run_parts
from .options import BackfillOptions, JobOptions, RewindOptions
from .ratelimit import TokenBucket
from .snapshot import check_clock, describe_table
from .summary import EXIT_OK

CLIENT_OPTIONS = dict(max_attempts=5, connect_timeout=3, read_timeout=30)


def clock_skew_s(env: dict | None = None) -> float:
    """``BACKFILL_CLOCK_SKEW_MS`` in seconds (declared in ``reprocess.options``)."""
    from .options import BACKFILL_CLOCK_SKEW_MS

    return BACKFILL_CLOCK_SKEW_MS.read(env) / 1000


# ---- planning ---------------------------------------------------------------------------------
def plan_backfill(options: BackfillOptions, clients: ClientCache) -> tuple[list[str], dict]:
    if not options.users_table:
        raise JobError("a backfill scans the users table: set USERS_TABLE")
    try:
        source = backfill.describe(clients.get("dynamodb"), options.users_table)
    except Exception as exc:
        from streamkit.awsclient import describe_aws_error

        raise JobError(f"cannot describe table {options.users_table}: {describe_aws_error(exc)}") from exc
    skew = clock_skew_s()
    check_clock(source.get("clockOffsetS"), skew)
    source.update(segments=options.segments, rate=options.rate, clockSkewS=skew, mode="current state",
                  pageSize=options.page_size or backfill.auto_page_size(
                      options.rate, options.segments, source["itemCount"], source["tableSizeBytes"]))
    source["estimate"] = backfill.estimate(source, options.rate)
    return [str(i) for i in range(options.segments)], source


def stream_arn_for(options: RewindOptions, clients: ClientCache) -> tuple[str, float | None]:
    """The stream to rewind (``--stream-arn``, else ``STREAM_ARN``: the stack's source, else the
    users table's latest DynamoDB stream) and our clock's offset from DynamoDB's (``None`` when
    the table was not asked)."""
    from .options import STREAM_ARN

    arn = options.stream_arn or STREAM_ARN.read() or None
    if arn and not (options.effective_mode == "latest" and options.users_table):
        return arn, None
    if not options.users_table:
        raise JobError("a rewind reads the consumers' stream: set STREAM_ARN or USERS_TABLE, or pass --stream-arn")
    try:
        table, offset = describe_table(clients.get("dynamodb"), options.users_table)
    except Exception as exc:
        from streamkit.awsclient import describe_aws_error

        raise JobError(f"cannot describe table {options.users_table}: {describe_aws_error(exc)}") from exc
    arn = arn or table.get("LatestStreamArn")
    if not arn:
        raise JobError(f"table {options.users_table} has no stream to rewind (enable one, or pass --stream-arn)")
    return arn, offset


def plan_rewind(options: RewindOptions, clients: ClientCache, now: datetime) -> tuple[list[str], dict]:
    arn, offset = stream_arn_for(options, clients)
    skew = clock_skew_s()
    if options.effective_mode == "latest":  # records rebuilt from a read are ordered as that read
        check_clock(offset, skew)
    until = options.until or now
    assert options.since is not None  # RewindOptions requires it
    try:
        source = rewind.plan(clients.get(rewind.source_for(arn).client), arn, options.since, until,
                             options.window_s, now=now)
    except JobError:
        raise
    except Exception as exc:
        from streamkit.awsclient import describe_aws_error

        raise JobError(f"cannot describe stream {arn}: {describe_aws_error(exc)}") from exc
    source.update(mode=options.effective_mode, table=options.users_table, clockSkewS=skew, clockOffsetS=offset)
    return [str(i) for i in range(len(source["lineages"]))], source


def open_job(options: JobOptions, *, store: CheckpointStore, clients: ClientCache, job_id: str | None = None,
             resume: str | None = None, now: datetime | None = None) -> Job:
    """A new job planned from ``options``, or the job ``resume`` loaded from ``store``."""
    if resume:
        job = Job.load(store, resume)
        if job.kind != options.kind or job.consumer != options.consumer:
            raise JobError(f"job {resume} is a {job.kind} of {job.consumer}, not a {options.kind} of {options.consumer}")
        return job
    now = now or datetime.now(UTC)
    options = options.resolved()
    if isinstance(options, BackfillOptions):
        parts, source = plan_backfill(options, clients)
    else:
        parts, source = plan_rewind(options, clients, now)
    return Job.create(store, kind=options.kind, consumer=options.consumer, options=options.to_wire(), parts=parts,
                      source=source, job_id=job_id)


def options_of(job: Job) -> JobOptions:
    """The options a job was started with (a resume runs with them, whoever resumes it)."""
    data = {**job.manifest["options"], "consumer": job.consumer}
    if job.kind == "backfill":
        return BackfillOptions.from_wire(data)
    return RewindOptions.from_wire(data)


# ---- running ----------------------------------------------------------------------------------
def failure_capture(consumer: str, clients: ClientCache, env: Mapping[str, str] | None = None) -> FailureCapture:
    """The stream path's capture, pointed at the consumer's failure queue (clients made now,
    on this thread: the parts share it)."""
    env = os.environ if env is None else env
    spec = get_consumer(consumer)
    sqs = clients.get("sqs")
    try:
        url = spec.resolve_queue_url(sqs, "failures", env)
    except Exception as exc:
        raise ConfigError(f"cannot resolve the failures queue of {consumer}: {type(exc).__name__}: {exc}") from exc
    if not url:
        raise ConfigError(f"no failures queue for {consumer}: {spec.queue_name('failures', env)} does not exist; "
                          f"set {spec.key}_FAILURE_QUEUE_URL (failures are captured there, never dropped)")
    capture = FailureCapture(consumer, url, env.get("FAILURE_BUCKET") or None,
                             function_name=env.get("AWS_LAMBDA_FUNCTION_NAME") or "reprocess.py")
    capture.sqs  # noqa: B018  (made here, not concurrently by the part threads)
    if capture.bucket:
        capture.s3  # noqa: B018
    return capture


def execute(job: Job, options: JobOptions, *, clients: ClientCache, parts: list[str] | None = None,
            handle_record: Callable[[StreamRecord], Any] | None = None, deadline: Deadline | None = None,
            stop: threading.Event | None = None, progress: Callable[[PartState], None] | None = None,
            read_interval_s: float | None = None) -> dict:
    """Run ``parts`` (default: all) of ``job`` with ``options`` (resolved here); the summary."""
    options = options.resolved()
    parts = job.parts if parts is None else parts
    unknown = sorted(set(parts) - set(job.parts))
    if unknown:
        raise JobError(f"job {job.job_id} has no part(s) {', '.join(unknown)} (parts: 0..{len(job.parts) - 1})")
    deadline = deadline or Deadline.from_seconds(None)
    stop = stop or threading.Event()
    log = LazyLogger(component="reprocess", job=job.job_id, kind=job.kind, consumer=job.consumer)
    dry_run = options.dry_run
    feeder_for = None
    if not dry_run:
        spec = options.spec
        try:
            handle_record = handle_record or spec.load()
        except Exception as exc:
            raise ConfigError(f"cannot load {spec.module}.handle_record: {type(exc).__name__}: {exc}") from exc
        capture = failure_capture(job.consumer, clients)
        mode = "as-read" if job.kind == "backfill" else options.effective_mode  # type: ignore[union-attr]
        if mode == "latest" and not options.users_table:
            raise ConfigError("latest mode re-reads items from the users table: set USERS_TABLE (or --mode replay)")
        dynamodb = clients.get("dynamodb") if mode == "latest" else None

        def feeder_for(part: str, ctx: RunContext) -> Feeder:
            return Feeder(handle_record, mode=mode, capture=capture, request_id=f"{job.job_id}/{part}",
                          clock_skew_s=job.source.get("clockSkewS", clock_skew_s()),
                          deadline=ctx.deadline, stop=ctx.stop, max_retries=options.max_retries or 0,
                          base_delay_s=options.retry_base_delay_s or 0.0,
                          max_delay_s=options.retry_max_delay_s or 0.0, dynamodb=dynamodb,
                          users_table=options.users_table)

    if isinstance(options, BackfillOptions):
        bucket = None
        if options.rate:
            share = options.rate * len(parts) / max(1, len(job.parts))  # a remote part runs its share
            bucket = TokenBucket(share)
        runner: Any = backfill.BackfillRunner(dynamodb=clients.get("dynamodb"), feeder_for=feeder_for,
                                              bucket=bucket, dry_run=dry_run,
                                              clock_skew_s=job.source["clockSkewS"])
        threads = options.threads
    else:
        client = clients.get(rewind.SOURCES[job.source.get("source", "dynamodb")].client)
        runner = rewind.RewindRunner(client=client, feeder_for=feeder_for, dry_run=dry_run,
                                     read_interval_s=rewind.READ_INTERVAL_S if read_interval_s is None else read_interval_s)
        threads = options.threads(len(parts))
    started = time.monotonic()
    run_parts(job, parts, runner, threads=threads, deadline=deadline, stop=stop, progress=progress, log=log)
    summary = job.write_summary_if_finished()
    summary["duration_s"] = round(time.monotonic() - started, 3)  # this run's (a job may take several)
    return summary


def run_job(options: JobOptions, *, store: CheckpointStore | None = None, job_id: str | None = None,
            resume: str | None = None, parts: list[str] | None = None,
            handle_record: Callable[[StreamRecord], Any] | None = None, deadline: Deadline | None = None,
            stop: threading.Event | None = None, progress: Callable[[PartState], None] | None = None,
            clients: dict[str, Any] | ClientCache | None = None,
            on_open: Callable[[Job], None] | None = None) -> dict:
    """Plan (or resume) and run a job; the summary dict. ``ConfigError`` for bad usage."""
    cache = clients if isinstance(clients, ClientCache) else ClientCache(clients, **CLIENT_OPTIONS, pool=64)
    store = store or open_store(s3=cache.get("s3") if _has_bucket() else None)
    options = options.resolved()
    if isinstance(options, BackfillOptions) and options.dry_run and not resume:
        _, source = plan_backfill(options, cache)
        return {"kind": "backfill", "consumer": options.consumer, "dry_run": True, "status": "planned",
                "source": source, "estimate": source["estimate"], "options": options.to_wire(),
                "exit_code": EXIT_OK, "notes": ["a dry run scans nothing: the estimate is from DescribeTable "
                                                "(refreshed about every 6 hours)"]}
    job = open_job(options, store=store, clients=cache, job_id=job_id, resume=resume)
    if resume:
        options = options_of(job).resolved()
    if on_open is not None:
        on_open(job)
    return execute(job, options, clients=cache, parts=parts, handle_record=handle_record, deadline=deadline,
                   stop=stop, progress=progress)


def _has_bucket() -> bool:
    from .checkpoints import jobs_bucket

    return bool(jobs_bucket())
