"""What the API accepts in a query string or a request body: checked here, 400 otherwise."""
from __future__ import annotations

from typing import Any

from flask import Request

from consumers.registry import REPROCESS_MODES

from .errors import ApiError
from .sampling import MAX_SAMPLE

MAX_REPROCESS = 10_000
MAX_CONCURRENCY = 8
REPROCESS_FIELDS = ("max", "mode", "dryRun", "concurrency")


def sample_limit(raw: str | None) -> int:
    """``?limit=`` of a failure sample: 1 to ``MAX_SAMPLE`` (one ReceiveMessage)."""
    raw = str(MAX_SAMPLE) if raw is None else raw
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_SAMPLE}, got {raw!r}") from None
    if not 1 <= limit <= MAX_SAMPLE:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_SAMPLE}, got {limit}")
    return limit


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def reprocess_body(request: Request) -> dict:
    """``POST /consumers/<name>/reprocess``'s body as ``JobRunner.start`` options:
    ``{max_messages, mode, dry_run, concurrency}``.

    Always JSON, even with an empty body: a cross-site <form> cannot send that content type
    (and a cross-origin fetch with it needs a CORS preflight this app never grants), so a
    page on another site cannot start a reprocess against a local API.
    """
    if not request.is_json:
        raise ApiError(400, "body must be JSON (Content-Type: application/json), e.g. {} for the defaults")
    data = request.get_json(silent=True) if request.content_length else {}
    if data is None:
        raise ApiError(400, "body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, 'body must be a JSON object like {"max": 100, "mode": "replay", "dryRun": true}')
    unknown = sorted(set(data) - set(REPROCESS_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REPROCESS_FIELDS)}")
    max_messages = data.get("max")
    if max_messages is not None and not (_is_int(max_messages) and 1 <= max_messages <= MAX_REPROCESS):
        raise ApiError(400, f"max must be an integer from 1 to {MAX_REPROCESS}, got {max_messages!r}")
    mode = data.get("mode")
    if mode is not None and mode not in REPROCESS_MODES:
        raise ApiError(400, f"mode must be one of {', '.join(REPROCESS_MODES)}, got {mode!r}")
    dry_run = data.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, f"dryRun must be true or false, got {dry_run!r}")
    concurrency = data.get("concurrency", 1)
    if not (_is_int(concurrency) and 1 <= concurrency <= MAX_CONCURRENCY):
        raise ApiError(400, f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
    return {"max_messages": max_messages, "mode": mode, "dry_run": dry_run, "concurrency": concurrency}
