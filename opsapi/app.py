"""Flask app factory for the operator API and its page.

Routes (all JSON except ``/``):
  GET  /consumers                       every consumer's health
  GET  /consumers/<name>                one consumer
  GET  /consumers/<name>/failures       a sample of captured failures (not consumed)
  POST /consumers/<name>/reprocess      start a reprocess job -> 202 {"jobId"}
  GET  /jobs, GET /jobs/<id>            job status and summary
  GET  /                                the operator page
"""
from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from consumers.registry import CONSUMERS, REPROCESS_MODES, UnknownConsumerError, get_consumer

from .inspect_aws import MAX_SAMPLE, Clients, FailureSampler, Inspector, age_seconds, function_name
from .jobs import JobConflict, JobRunner
from .secrets import scrub, scrub_text, secret_values

MAX_REPROCESS = 10_000
MAX_CONCURRENCY = 8
DEFAULT_DRAIN_OPTIONS = {"wait_time_s": 1}


class ApiError(Exception):
    """An error with an HTTP status, rendered as JSON."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def create_app(config: dict | None = None) -> Flask:
    """Build the app. ``config`` keys (all optional): ``SAMPLE_TTL_S`` (15), ``ESM_STATE_PATH``,
    ``DRAIN_OPTIONS`` (extra ``drain()`` options for local jobs), ``REPROCESS_FUNCTION_NAME``
    (default: env; set -> jobs are async Lambda invokes), ``JOBS_BUCKET`` (default: env; where
    the reprocess Lambda stores job summaries)."""
    app = Flask(__name__)
    app.config.update(
        SAMPLE_TTL_S=float(os.environ.get("OPSAPI_SAMPLE_TTL_S", "15")),
        ESM_STATE_PATH=None,
        DRAIN_OPTIONS=dict(DEFAULT_DRAIN_OPTIONS),
        REPROCESS_FUNCTION_NAME=os.environ.get("REPROCESS_FUNCTION_NAME") or None,
        JOBS_BUCKET=os.environ.get("JOBS_BUCKET") or None,
        REFRESH_MS=int(os.environ.get("OPSAPI_REFRESH_MS", "3000")),
    )
    app.config.update(config or {})
    app.json.sort_keys = False

    clients = Clients()
    inspector = Inspector(clients, state_path=app.config["ESM_STATE_PATH"],
                          use_cloudwatch=bool(app.config["REPROCESS_FUNCTION_NAME"]))
    sampler = FailureSampler(inspector, ttl_s=app.config["SAMPLE_TTL_S"])
    jobs = JobRunner(clients=clients, function_name=app.config["REPROCESS_FUNCTION_NAME"],
                     on_finish=sampler.invalidate, drain_options=app.config["DRAIN_OPTIONS"],
                     jobs_bucket=app.config["JOBS_BUCKET"])
    app.extensions["opsapi"] = {"inspector": inspector, "sampler": sampler, "jobs": jobs, "clients": clients}

    def consumer_or_404(name: str):
        try:
            return get_consumer(name)
        except UnknownConsumerError as exc:
            raise ApiError(404, str(exc), known=list(CONSUMERS)) from None

    def consumer_view(consumer) -> dict:
        failures = inspector.queue_info(consumer, "failures")
        parking = inspector.queue_info(consumer, "parking")
        running = jobs.running(consumer.name) if not jobs.remote else None
        if failures.get("exists") and failures.get("visible") == 0 and failures.get("inFlight") == 0:
            sampler.invalidate(consumer.name)
            sample = None
        elif failures.get("exists"):
            # While a local job drains this queue, never peek: a hidden message could end its run early.
            sample = sampler.sample(consumer, MAX_SAMPLE, hold=running is not None)
        else:
            sample = None
        oldest = (sample or {}).get("oldestCapturedAt")
        mapping = inspector.mapping(consumer)
        policy = inspector.policy(consumer)
        lag = (mapping or {}).get("iteratorAgeSeconds")
        if lag is None:
            lag = inspector.iterator_age_s(function_name(consumer))
        return {
            "name": consumer.name,
            "description": consumer.description,
            "function": function_name(consumer),
            "policy": policy["policy"],
            "policySource": policy["source"],
            **({"policyNote": policy["note"]} if policy.get("note") else {}),
            "reprocessMode": consumer.reprocess_mode,
            "failures": failures,
            "parking": parking,
            "oldestFailure": {
                "capturedAt": oldest,
                "ageSeconds": age_seconds(oldest),
                "source": "sample of up to 10 messages (capturedAt)" if oldest else None,
                "queueAgeSeconds": inspector.oldest_message_age_s(failures["name"]),
            },
            "topErrorTypes": (sample or {}).get("countsByErrorType", {}),
            "lagSeconds": lag,
            "mapping": mapping,
            "job": {"jobId": running["jobId"], "status": running["status"], "dryRun": running["request"]["dryRun"]}
            if running else None,
        }

    @app.get("/")
    def index() -> str:
        return render_template("index.html", refresh_ms=app.config["REFRESH_MS"], modes=REPROCESS_MODES)

    @app.get("/healthz")
    def healthz():
        return jsonify({"ok": True})

    @app.get("/consumers")
    def list_consumers():
        return jsonify(scrub({"consumers": [consumer_view(c) for c in CONSUMERS.values()],
                              "runner": "lambda" if jobs.remote else "local"}))

    @app.get("/consumers/<name>")
    def show_consumer(name: str):
        return jsonify(scrub(consumer_view(consumer_or_404(name))))

    @app.get("/consumers/<name>/failures")
    def failures(name: str):
        consumer = consumer_or_404(name)
        raw = request.args.get("limit", str(MAX_SAMPLE))
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError(400, f"limit must be an integer from 1 to {MAX_SAMPLE}, got {raw!r}") from None
        if not 1 <= limit <= MAX_SAMPLE:
            raise ApiError(400, f"limit must be an integer from 1 to {MAX_SAMPLE}, got {limit}")
        running = jobs.running(consumer.name) if not jobs.remote else None
        sample = sampler.sample(consumer, limit, hold=running is not None)
        sample.pop("nearRedrive", None)
        return jsonify(scrub({"consumer": consumer.name, **sample}))

    @app.post("/consumers/<name>/reprocess")
    def reprocess(name: str):
        consumer = consumer_or_404(name)
        body = parse_reprocess_body(consumer)
        try:
            job = jobs.start(consumer.name, **body)
        except JobConflict as exc:
            running = jobs.running(consumer.name) or {}
            raise ApiError(409, str(exc), jobId=running.get("jobId")) from None
        sampler.invalidate(consumer.name)
        resp = jsonify({"jobId": job["jobId"], "status": job["status"], "consumer": consumer.name,
                        "runner": job["runner"], "request": job["request"], "href": f"/jobs/{job['jobId']}"})
        resp.status_code = 202
        resp.headers["Location"] = f"/jobs/{job['jobId']}"
        return resp

    @app.get("/jobs")
    def list_jobs():
        return jsonify(scrub({"jobs": jobs.list()}))

    @app.get("/jobs/<job_id>")
    def show_job(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} in this process (jobs are kept in memory)")
        return jsonify(scrub(job))

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        resp = jsonify({"error": exc.message, "status": exc.status, **exc.extra})
        resp.status_code = exc.status
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        resp = jsonify({"error": exc.description, "status": exc.code, "name": exc.name})
        resp.status_code = exc.code or 500
        return resp

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        resp = jsonify({"error": f"internal error: {type(exc).__name__}", "status": 500})
        resp.status_code = 500
        return resp

    @app.after_request
    def no_secrets(resp: Response) -> Response:
        """Last line of defence: no known secret value leaves in a JSON body."""
        if resp.mimetype == "application/json" and not resp.direct_passthrough:
            text = resp.get_data(as_text=True)
            clean = scrub_text(text, secret_values(os.environ, *_function_envs()))
            if clean != text:
                resp.set_data(clean)
        return resp

    def _function_envs() -> list[dict]:
        cached = getattr(inspector, "_functions", {})
        return [env for _, env in list(cached.values())]

    def parse_reprocess_body(consumer) -> dict:
        # Always JSON, even with an empty body: a cross-site <form> cannot send that content type
        # (and a cross-origin fetch with it needs a CORS preflight this app never grants), so a
        # page on another site cannot start a reprocess against a local API.
        if not request.is_json:
            raise ApiError(400, "body must be JSON (Content-Type: application/json), e.g. {} for the defaults")
        data = request.get_json(silent=True) if request.content_length else {}
        if data is None:
            raise ApiError(400, "body is not valid JSON")
        if not isinstance(data, dict):
            raise ApiError(400, 'body must be a JSON object like {"max": 100, "mode": "replay", "dryRun": true}')
        unknown = sorted(set(data) - {"max", "mode", "dryRun", "concurrency"})
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: max, mode, dryRun, concurrency")
        max_messages = data.get("max")
        if max_messages is not None and (isinstance(max_messages, bool) or not isinstance(max_messages, int)
                                         or not 1 <= max_messages <= MAX_REPROCESS):
            raise ApiError(400, f"max must be an integer from 1 to {MAX_REPROCESS}, got {max_messages!r}")
        mode = data.get("mode")
        if mode is not None and mode not in REPROCESS_MODES:
            raise ApiError(400, f"mode must be one of {', '.join(REPROCESS_MODES)}, got {mode!r}")
        dry_run = data.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise ApiError(400, f"dryRun must be true or false, got {dry_run!r}")
        concurrency = data.get("concurrency", 1)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ApiError(400, f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
        effective = mode or consumer.reprocess_mode
        if (not jobs.remote and effective == "latest" and not dry_run and not os.environ.get("USERS_TABLE")
                and not app.config["DRAIN_OPTIONS"].get("users_table")):
            raise ApiError(400, f"{consumer.name} reprocesses in latest mode, which re-reads items from the users "
                                'table: set USERS_TABLE for this API, or send "mode": "replay"')
        return {"max_messages": max_messages, "mode": mode, "dry_run": dry_run, "concurrency": concurrency}

    return app
