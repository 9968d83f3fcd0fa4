"""The kinds of work an operator job runs, one registry for the operator API and the reprocess
Lambda: a drain of the failure queue, a redrive of parked messages, and what else registers.

A kind says how to read its request (the API body, also the Lambda event), how many things it
would touch (the count an operator confirms before anything runs), whether it changes nothing
(a dry run needs no confirmation), and how to run it with a ``JobContext`` (progress "N of
total", a ``should_stop`` checked between items: cancel; the Lambda's deadline). Another
job kind (a rewind or backfill) plugs in with ``register(JobKind(...))``::

    register(JobKind(name="backfill", title="backfill from the table", parse=..., plan=..., run=...))

and the API's confirmation, progress, cancel, history and caller identity work for it as they
do for a drain. ``reprocess.checkpointed`` registers the backfill and the rewind this way
(imported at the end of this module, so every user of the registry sees them).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import API_FIELDS, DrainOptions, OptionsError


@dataclass(frozen=True)
class Plan:
    """What a job would do before it runs: ``count`` items (the number an operator confirms)
    and a sentence saying what (``"5 messages in userstream-dev-crm-sync-failures"``)."""

    count: int | None
    what: str
    error: str | None = None  # the count could not be read (the job may still run)


@dataclass
class JobContext:
    """What a running job gets from whoever runs it (the API's thread, the reprocess Lambda)."""

    job_id: str | None = None
    total: int | None = None  # the confirmed count: progress is "done of total"
    should_stop: Callable[[], str | None] | None = None  # a reason (words) when it must stop
    report: Callable[[int, dict], None] = lambda done, summary: None  # progress: done so far, summary so far
    deadline: Any = None  # a streamkit.deadline.Deadline (the Lambda's) or None
    options: dict = field(default_factory=dict)  # extra keywords for the runner (tests, the local API)
    jobs_bucket: str | None = None  # where the job's records are (a backfill's checkpoints go beside them)


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str  # how the page names it: "reprocess", "redrive parked"
    parse: Callable[[Mapping[str, Any], str], dict]  # (body, consumer) -> request; OptionsError when bad
    plan: Callable[[Any, str, dict], Plan]  # (boto3 ClientCache, consumer, request) -> Plan
    run: Callable[[str, dict, JobContext], dict]  # (consumer, request, context) -> summary (exit_code, stopped_by)
    changes_nothing: Callable[[dict], bool] = lambda request: False  # a dry run: no confirmation needed
    limit_field: str | None = "max"  # the request field the confirmed count caps (None: it caps nothing,
    #                                  it is the progress' total: a backfill's items, a rewind's windows)
    max_confirm: int = 10_000  # the largest count an operator may confirm


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise OptionsError(f"unknown job kind {name!r}; known: {', '.join(KINDS)}") from None


def _queue_plan(clients: Any, consumer: str, queue: str) -> Plan:
    """The number of messages visible in one of ``consumer``'s queues (GetQueueAttributes)."""
    from consumers.registry import get_consumer
    from streamkit.awsclient import describe_aws_error

    spec = get_consumer(consumer)
    name = spec.queue_name(queue)
    try:
        sqs = clients.get("sqs")
        url = spec.resolve_queue_url(sqs, queue)
        if url is None:
            return Plan(0, f"no queue {name}")
        name = url.rstrip("/").rsplit("/", 1)[-1]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    except Exception as exc:
        return Plan(None, f"messages in {name}", error=describe_aws_error(exc))
    return Plan(int(attrs.get("ApproximateNumberOfMessages", 0)), f"messages in {name}")


# ---- drain: the failure queue through the consumer's handle_record --------------------------------
def _drain_parse(body: Mapping[str, Any], consumer: str) -> dict:
    options = DrainOptions.from_wire(body, consumer=consumer, allowed=API_FIELDS)
    return {"max": options.max_messages, "mode": options.mode, "dryRun": options.dry_run,
            "concurrency": options.concurrency}


def _drain_run(consumer: str, request: dict, ctx: JobContext) -> dict:
    from .worker import drain

    options = DrainOptions.from_wire({**{k: v for k, v in request.items() if v is not None}, "jobId": ctx.job_id},
                                     consumer=consumer, allowed=(*API_FIELDS, "jobId"))
    summary = drain(options=options, deadline=ctx.deadline, should_stop=ctx.should_stop,
                    progress=lambda s: ctx.report(s.taken, s.to_dict()), **ctx.options)
    return summary.to_dict()


register(JobKind(
    name="drain", title="reprocess", parse=_drain_parse,
    plan=lambda clients, consumer, request: _queue_plan(clients, consumer, "failures"),
    run=_drain_run, changes_nothing=lambda request: bool(request.get("dryRun")),
))


# ---- redrive: parked messages back to the failure queue ------------------------------------------
def _redrive_parse(body: Mapping[str, Any], consumer: str) -> dict:
    if not isinstance(body, Mapping):
        raise OptionsError('expected a JSON object like {"max": 100}')
    unknown = sorted(set(body) - {"max"})
    if unknown:
        raise OptionsError(f"unknown field(s) {', '.join(unknown)}; allowed: max")
    value = body.get("max")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000):
        raise OptionsError(f"max must be an integer from 1 to 10000, got {value!r}")
    return {"max": value}


def _redrive_run(consumer: str, request: dict, ctx: JobContext) -> dict:
    from streamkit.ledger import Ledger

    from .redrive import redrive_parked

    def stop() -> str | None:
        reason = ctx.should_stop() if ctx.should_stop is not None else None
        if reason is None and ctx.deadline is not None and ctx.deadline.expired():
            reason = "time budget used"
        return reason

    ledger = Ledger.from_env(consumer)
    summary = redrive_parked(consumer, max_messages=request.get("max"), ledger=ledger, job_id=ctx.job_id,
                             should_stop=stop, progress=lambda s: ctx.report(s.taken, s.to_dict()),
                             **{k: v for k, v in ctx.options.items() if k in ("sqs", "wait_time_s")})
    return summary.to_dict()


register(JobKind(
    name="redrive", title="redrive parked", parse=_redrive_parse,
    plan=lambda clients, consumer, request: _queue_plan(clients, consumer, "parking"),
    run=_redrive_run,
))


from . import checkpointed  # noqa: E402,F401  (registers backfill and rewind)
