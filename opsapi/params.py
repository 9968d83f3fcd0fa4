"""What the API accepts in a query string or a request body: checked here, 400 otherwise."""
from __future__ import annotations

from flask import Request

from .errors import ApiError
from .sampling import MAX_SAMPLE


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


def reprocess_body(request: Request, consumer: str) -> dict:
    """``POST /consumers/<name>/reprocess``'s body as ``JobRunner.start`` options:
    ``{max_messages, mode, dry_run, concurrency}``, validated by ``reprocess.options``
    (one set of limits, the same messages as the CLI and the reprocess Lambda).

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
    from reprocess.options import API_FIELDS, DrainOptions, OptionsError  # the limits the CLI and Lambda use

    try:
        options = DrainOptions.from_wire(data, consumer=consumer, allowed=API_FIELDS)
    except OptionsError as exc:
        raise ApiError(400, str(exc)) from None
    return {"max_messages": options.max_messages, "mode": options.mode, "dry_run": options.dry_run,
            "concurrency": options.concurrency}
