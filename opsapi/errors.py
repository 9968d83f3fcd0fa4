"""Every error the API returns is JSON: ``{"error": <message>, "status": <code>, ...}``."""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """An error with an HTTP status, rendered as JSON; ``extra`` fields join the body."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _json(status: int, body: dict) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp


def api_error(exc: ApiError) -> Response:
    return _json(exc.status, {"error": exc.message, "status": exc.status, **exc.extra})


def http_error(exc: HTTPException) -> Response:
    """Flask's own 404 (unknown route), 405 (wrong method) and the like."""
    return _json(exc.code or 500, {"error": exc.description, "status": exc.code, "name": exc.name})


def unexpected(exc: Exception) -> Response:
    """Anything else: logged with its traceback, answered with the error type only."""
    current_app.logger.exception("unhandled error")
    return _json(500, {"error": f"internal error: {type(exc).__name__}", "status": 500})


def register_error_handlers(app: Flask) -> None:
    """On the app, not a blueprint: unknown routes and methods never reach a blueprint."""
    app.register_error_handler(ApiError, api_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)
