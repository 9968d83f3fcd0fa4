"""What the API accepts in a query string or a request body: checked here, 400 otherwise."""
from __future__ import annotations

from typing import Any

from flask import Request

from streamkit.ledger import BLOCKING_STATES, FAILURE_STATES

from .errors import ApiError

MAX_LIST = 200
MAX_FILTER_CHARS = 200


def list_limit(raw: str | None, default: int = 50) -> int:
    """``?limit=`` of a failure list: 1 to ``MAX_LIST``."""
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIST}, got {raw!r}") from None
    if not 1 <= limit <= MAX_LIST:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIST}, got {limit}")
    return limit


def failure_filters(args: Any) -> dict:
    """``?state=&errorType=&key=&limit=&cursor=`` of ``GET /consumers/<name>/failures``."""
    state = args.get("state") or None
    allowed = (*FAILURE_STATES, *BLOCKING_STATES)
    if state is not None and state not in allowed:
        raise ApiError(400, f"state must be one of {', '.join(allowed)}, got {state!r}")
    out = {"state": state, "limit": list_limit(args.get("limit")), "cursor": args.get("cursor") or None}
    for name, field in (("errorType", "error_type"), ("key", "key")):
        value = args.get(name) or None
        if value is not None and len(value) > MAX_FILTER_CHARS:
            raise ApiError(400, f"{name} must be at most {MAX_FILTER_CHARS} characters")
        out[field] = value
    return out


def json_body(request: Request) -> dict:
    """A JSON object body, even when empty.

    Always JSON: a cross-site <form> cannot send that content type (and a cross-origin fetch
    with it needs a CORS preflight this app never grants), so a page on another site cannot
    start a job against a local API.
    """
    if not request.is_json:
        raise ApiError(400, "body must be JSON (Content-Type: application/json), e.g. {} for the defaults")
    data = request.get_json(silent=True) if request.content_length else {}
    if data is None:
        raise ApiError(400, "body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, 'body must be a JSON object like {"max": 100, "mode": "replay", "dryRun": true}')
    return data


def confirm_count(data: dict, high: int = 10_000) -> int | None:
    """``confirmCount``: the count the operator saw and confirmed (1 to ``high``: the job
    kind's), None when absent."""
    value = data.pop("confirmCount", None)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise ApiError(400, f"confirmCount must be an integer from 1 to {high} (the count you confirmed), got {value!r}")
    return value
