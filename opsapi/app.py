"""The app factory (Flask's ``create_app`` pattern): configuration, services, routes, errors.

The routes are ``opsapi.views.bp``; what they call is ``opsapi.services.Services``; errors are
JSON (``opsapi.errors``); every JSON body is scrubbed of known secret values on the way out.
"""
from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response

from .errors import register_error_handlers
from .secrets import scrub_text, secret_values
from .services import Services, get_services
from .views import bp

DEFAULT_DRAIN_OPTIONS = {"wait_time_s": 1}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` keys (all optional): ``SAMPLE_TTL_S`` (15), ``REFRESH_MS`` (3000),
    ``ESM_STATE_PATH``, ``DRAIN_OPTIONS`` (extra ``drain()`` options for local jobs),
    ``REPROCESS_FUNCTION_NAME`` (default: env; set -> jobs are async Lambda invokes),
    ``JOBS_BUCKET`` (default: env; where the reprocess Lambda stores job summaries)."""
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
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider has it; the base type does not

    Services.from_config(app.config).install(app)
    app.register_blueprint(bp)
    register_error_handlers(app)
    app.after_request(redact_secret_values)
    return app


def redact_secret_values(resp: Response) -> Response:
    """Last line of defence: no known secret value (this process's environment, the consumer
    functions' environments read so far) leaves in a JSON body."""
    if resp.mimetype == "application/json" and not resp.direct_passthrough:
        text = resp.get_data(as_text=True)
        clean = scrub_text(text, secret_values(os.environ, *get_services().inspector.function_envs_seen()))
        if clean != text:
            resp.set_data(clean)
    return resp
