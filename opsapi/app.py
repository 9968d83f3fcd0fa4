"""The app factory (Flask's ``create_app`` pattern): configuration, services, routes, errors,
and what every response gets on the way out (``opsapi.security`` headers; secret values
redacted from JSON bodies, ``opsapi.secrets``)."""
from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response

from .errors import register_error_handlers
from .secrets import Redactor, secret_values
from .security import add_headers, trusted_hosts
from .services import Services, get_services
from .views import bp

DEFAULT_DRAIN_OPTIONS = {"wait_time_s": 1}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` keys (all optional): ``REFRESH_MS`` (3000), ``ESM_STATE_PATH``,
    ``DRAIN_OPTIONS`` (extra options for local jobs' runs), ``REPROCESS_FUNCTION_NAME``
    (default: env; set -> jobs are async Lambda invokes), ``JOBS_BUCKET`` (default: env; job
    records and history), ``LEDGER_TABLE`` and ``CIRCUIT_TABLE`` (default: env, else the deployed name),
    ``LEDGER_TTL_S`` (10: how long ledger reads are reused), ``TRUSTED_HOSTS`` (default:
    ``OPSAPI_TRUSTED_HOSTS``, else loopback and API Gateway's domain), ``CLOCK`` (a monotonic
    clock for the caches; tests simulate time with it)."""
    app = Flask(__name__)
    app.config.update(
        ESM_STATE_PATH=None,
        DRAIN_OPTIONS=dict(DEFAULT_DRAIN_OPTIONS),
        REPROCESS_FUNCTION_NAME=os.environ.get("REPROCESS_FUNCTION_NAME") or None,
        JOBS_BUCKET=os.environ.get("JOBS_BUCKET") or None,
        LEDGER_TABLE=os.environ.get("LEDGER_TABLE") or None,
        CIRCUIT_TABLE=os.environ.get("CIRCUIT_TABLE") or None,
        LEDGER_TTL_S=float(os.environ.get("OPSAPI_LEDGER_TTL_S", "10")),
        REFRESH_MS=int(os.environ.get("OPSAPI_REFRESH_MS", "3000")),
        TRUSTED_HOSTS=trusted_hosts(),
        CLOCK=None,
    )
    app.config.update(config or {})
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider has it; the base type does not

    Services.from_config(app.config).install(app)
    app.register_blueprint(bp)
    register_error_handlers(app)
    app.after_request(redact_secret_values)
    app.after_request(add_headers)
    return app


_redactors: dict[tuple[str, ...], Redactor] = {}


def redact_secret_values(resp: Response) -> Response:
    """Last line of defence: no known secret value (this process's environment, the consumer
    functions' environments read so far), in any form, leaves in a JSON body."""
    if resp.mimetype == "application/json" and not resp.direct_passthrough:
        values = tuple(secret_values(os.environ, *get_services().inspector.function_envs_seen()))
        redactor = _redactors.get(values)
        if redactor is None:
            if len(_redactors) > 16:  # the set of secrets changes rarely; never grow without bound
                _redactors.clear()
            redactor = _redactors[values] = Redactor(values)
        text = resp.get_data(as_text=True)
        clean = redactor.json_text(text)
        if clean != text:
            resp.set_data(clean)
    return resp
