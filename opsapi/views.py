"""The operator API's routes (one blueprint): parse the request, ask the services, answer JSON.

Routes (all JSON except ``/``):
  GET  /                                  the operator page (its code: static/app.js)
  GET  /healthz                           {"ok": true}, without touching AWS
  GET  /consumers, /consumers/<name>      health: badge and reasons, queues, ledger counts, mapping
  GET  /consumers/<name>/failures         failures from the ledger (?state=&errorType=&key=&limit=&cursor=)
  GET  /consumers/<name>/charts           the last 3 hours, minute by minute
  POST /consumers/<name>/reprocess        a drain job          } without "confirmCount": 428 with the
  POST /consumers/<name>/redrive          a redrive of parked  } count to confirm; with it: 202 {"jobId"}
  POST /consumers/<name>/jobs/<kind>      any registered job kind: drain, redrive, backfill
                                          ({"segments", "rate", "pageSize", "dryRun"}), rewind
                                          ({"since", "until", "window", "mode", "dryRun"})
  GET  /jobs, GET /jobs/<id>              history and one job (progress, ETA, why it stopped, caller)
  POST /jobs/<id>/cancel                  stop a job before its next message

Nothing here receives from a failure queue: SQS has no peek (see ``opsapi.ledger_view``).
"""
from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from consumers.registry import CONSUMERS, REPROCESS_MODES, Consumer, UnknownConsumerError, get_consumer
from reprocess.jobkinds import KINDS
from reprocess.options import OptionsError
from streamkit.errors import ConfigError

from . import params
from .errors import ApiError
from .jobs import JobConflict, JobFinished
from .ledger_view import CursorError
from .security import caller_of
from .services import get_services
from .status import consumer_status

bp = Blueprint("opsapi", __name__)


def consumer_or_404(name: str) -> Consumer:
    try:
        return get_consumer(name)
    except UnknownConsumerError as exc:
        raise ApiError(404, str(exc), known=list(CONSUMERS)) from None


@bp.get("/")
def index() -> str:
    return render_template("index.html", refresh_ms=current_app.config["REFRESH_MS"], modes=REPROCESS_MODES,
                           kinds={k.name: k.title for k in KINDS.values()})


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/consumers")
def list_consumers() -> Response:
    svc = get_services()
    return jsonify({"consumers": [consumer_status(svc, c) for c in CONSUMERS.values()],
                    "runner": "lambda" if svc.jobs.remote else "local", "ledgerTable": svc.ledger.table})


@bp.get("/consumers/<name>")
def show_consumer(name: str) -> Response:
    return jsonify(consumer_status(get_services(), consumer_or_404(name)))


@bp.get("/consumers/<name>/failures")
def failures(name: str) -> Response:
    consumer = consumer_or_404(name)
    filters = params.failure_filters(request.args)
    try:
        answer = get_services().ledger.failures(consumer.name, **filters)
    except CursorError as exc:
        raise ApiError(400, str(exc)) from None
    return jsonify(answer)


@bp.get("/consumers/<name>/charts")
def charts(name: str) -> Response:
    consumer = consumer_or_404(name)
    svc = get_services()
    failures = svc.inspector.queue_info(consumer, "failures")
    return jsonify({"consumer": consumer.name, **svc.inspector.metrics(consumer, failures["name"])})


@bp.post("/consumers/<name>/reprocess")
def reprocess(name: str) -> Response:
    return start_job(name, "drain")


@bp.post("/consumers/<name>/redrive")
def redrive(name: str) -> Response:
    return start_job(name, "redrive")


@bp.post("/consumers/<name>/jobs/<kind>")
def start_job(name: str, kind: str) -> Response:
    """Start a job; anything but a dry run needs ``confirmCount``, the count the operator saw."""
    consumer = consumer_or_404(name)
    if kind not in KINDS:
        raise ApiError(404, f"unknown job kind {kind!r}", known=list(KINDS))
    spec = KINDS[kind]
    data = params.json_body(request)
    confirmed = params.confirm_count(data, spec.max_confirm)
    try:
        job_request = spec.parse(data, consumer.name)
    except OptionsError as exc:
        raise ApiError(400, str(exc)) from None
    svc = get_services()
    if kind == "drain":
        _check_local_latest(consumer, job_request)
    try:
        plan = svc.jobs.plan(kind, consumer.name, job_request)
    except ConfigError as exc:  # the job could not run as asked (a rewind past retention, no table)
        raise ApiError(400, str(exc)) from None
    limit = job_request.get(spec.limit_field) if spec.limit_field else None
    if spec.changes_nothing(job_request):
        known = [x for x in (limit, plan.count) if x is not None]
        total = min(known) if known else None
    elif confirmed is None:
        count = plan.count if limit is None or plan.count is None else min(limit, plan.count)
        raise ApiError(428, f"confirm: {spec.title} {count if count is not None else 'an unknown number of'} "
                            f"{plan.what} of {consumer.name}? Send the same request with \"confirmCount\": {count}",
                       confirm={"kind": kind, "title": spec.title, "consumer": consumer.name, "count": count,
                                "what": plan.what, "request": job_request, "field": "confirmCount",
                                **({"countError": plan.error} if plan.error else {})})
    else:
        total = confirmed if limit is None else min(limit, confirmed)
        if spec.limit_field:
            job_request[spec.limit_field] = total  # never more than the operator confirmed
    try:
        job = svc.jobs.start(kind, consumer.name, job_request, caller=caller_of(request), total=total,
                             confirmed=confirmed is not None)
    except JobConflict as exc:
        running = svc.jobs.running(consumer.name) or {}
        raise ApiError(409, str(exc), jobId=running.get("jobId")) from None
    svc.ledger.invalidate(consumer.name)
    href = f"/jobs/{job['jobId']}"
    resp = jsonify({"jobId": job["jobId"], "kind": kind, "status": job["status"], "consumer": consumer.name,
                    "runner": job["runner"], "request": job["request"], "total": job["total"],
                    "caller": job["caller"], "href": href})
    resp.status_code = 202
    resp.headers["Location"] = href
    return resp


def _check_local_latest(consumer: Consumer, job_request: dict) -> None:
    """A local job in latest mode re-reads items from the users table: without one it could
    only fail, so say so now rather than in the job."""
    jobs = get_services().jobs
    mode = job_request.get("mode") or consumer.reprocess_mode
    if (not jobs.remote and mode == "latest" and not job_request.get("dryRun") and not os.environ.get("USERS_TABLE")
            and not jobs.drain_options.get("users_table")):
        raise ApiError(400, f"{consumer.name} reprocesses in latest mode, which re-reads items from the users "
                            'table: set USERS_TABLE for this API, or send "mode": "replay"')


@bp.get("/jobs")
def list_jobs() -> Response:
    return jsonify(get_services().jobs.list(params.list_limit(request.args.get("limit"), default=20)))


@bp.get("/jobs/<job_id>")
def show_job(job_id: str) -> Response:
    job = get_services().jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (not in this process nor in the jobs bucket)")
    return jsonify(job)


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    params.json_body(request)  # JSON only: no cross-site form can cancel either
    try:
        job = get_services().jobs.cancel(job_id, caller_of(request))
    except JobFinished as exc:
        raise ApiError(409, str(exc)) from None
    if job is None:
        raise ApiError(404, f"no job {job_id!r}")
    return jsonify(job)
