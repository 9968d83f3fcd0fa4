"""The operator API's routes (one blueprint): parse the request, ask the services, answer JSON.

Routes (all JSON except ``/``):
  GET  /                                the operator page
  GET  /healthz                         {"ok": true}, without touching AWS
  GET  /consumers                       every consumer's health
  GET  /consumers/<name>                one consumer
  GET  /consumers/<name>/failures       a sample of captured failures (not consumed)
  POST /consumers/<name>/reprocess      start a reprocess job -> 202 {"jobId"}
  GET  /jobs, GET /jobs/<id>            job status and summary
"""
from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from consumers.registry import CONSUMERS, REPROCESS_MODES, Consumer, UnknownConsumerError, get_consumer

from . import params
from .errors import ApiError
from .jobs import JobConflict
from .secrets import scrub
from .services import get_services
from .status import consumer_status, failure_sample

bp = Blueprint("opsapi", __name__)


def consumer_or_404(name: str) -> Consumer:
    try:
        return get_consumer(name)
    except UnknownConsumerError as exc:
        raise ApiError(404, str(exc), known=list(CONSUMERS)) from None


@bp.get("/")
def index() -> str:
    return render_template("index.html", refresh_ms=current_app.config["REFRESH_MS"], modes=REPROCESS_MODES)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/consumers")
def list_consumers() -> Response:
    svc = get_services()
    return jsonify(scrub({"consumers": [consumer_status(svc, c) for c in CONSUMERS.values()],
                          "runner": "lambda" if svc.jobs.remote else "local"}))


@bp.get("/consumers/<name>")
def show_consumer(name: str) -> Response:
    return jsonify(scrub(consumer_status(get_services(), consumer_or_404(name))))


@bp.get("/consumers/<name>/failures")
def failures(name: str) -> Response:
    consumer = consumer_or_404(name)
    sample = failure_sample(get_services(), consumer, params.sample_limit(request.args.get("limit")))
    sample.pop("nearRedrive", None)
    return jsonify(scrub({"consumer": consumer.name, **sample}))


@bp.post("/consumers/<name>/reprocess")
def reprocess(name: str) -> Response:
    consumer = consumer_or_404(name)
    options = params.reprocess_body(request, consumer.name)
    svc = get_services()
    _check_local_latest(consumer, options)
    try:
        job = svc.jobs.start(consumer.name, **options)
    except JobConflict as exc:
        running = svc.jobs.running(consumer.name) or {}
        raise ApiError(409, str(exc), jobId=running.get("jobId")) from None
    svc.sampler.invalidate(consumer.name)
    href = f"/jobs/{job['jobId']}"
    resp = jsonify({"jobId": job["jobId"], "status": job["status"], "consumer": consumer.name,
                    "runner": job["runner"], "request": job["request"], "href": href})
    resp.status_code = 202
    resp.headers["Location"] = href
    return resp


def _check_local_latest(consumer: Consumer, options: dict) -> None:
    """A local job in latest mode re-reads items from the users table: without one it could
    only fail, so say so now rather than in the job."""
    jobs = get_services().jobs
    mode = options["mode"] or consumer.reprocess_mode
    if (not jobs.remote and mode == "latest" and not options["dry_run"] and not os.environ.get("USERS_TABLE")
            and not jobs.drain_options.get("users_table")):
        raise ApiError(400, f"{consumer.name} reprocesses in latest mode, which re-reads items from the users "
                            'table: set USERS_TABLE for this API, or send "mode": "replay"')


@bp.get("/jobs")
def list_jobs() -> Response:
    return jsonify(scrub({"jobs": get_services().jobs.list()}))


@bp.get("/jobs/<job_id>")
def show_job(job_id: str) -> Response:
    job = get_services().jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} in this process (jobs are kept in memory)")
    return jsonify(scrub(job))
