"""structlog JSON logs with PII masked; structlog is imported only when something is logged.

A healthy batch logs nothing per record, so a consumer on the happy path never pays for
importing structlog (measured in bench/). Lines written many times per batch (one per failed
record) skip structlog: ``write_line`` renders the same JSON shape (context, event, level,
timestamp) in a few µs instead of structlog's 150-200 µs processor chain; its caller masks
what may hold personal data (``streamkit.failurelog``).
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import MutableMapping
from typing import Any

from .errors import ConfigError
from .excinfo import compact_traceback as format_exception_compact
from .settings import Setting, upper

_configured = False
_threshold: int | None = None  # LOG_LEVEL as a number, read on first use
_encoder = json.JSONEncoder(default=str)  # made once: json.dumps(..., default=) makes one per call


def _c_encode() -> Any:
    """``obj -> JSON text`` as ``_encoder.encode`` writes it, through one C encoder made once
    (``JSONEncoder.encode`` makes one per call, with a dict for its circular-reference check:
    most of a compact failure line's cost). Log lines are fresh, acyclic dicts of plain values.
    Falls back to ``_encoder.encode`` where ``_json`` has no C encoder."""
    from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

    if c_make_encoder is None:
        return _encoder.encode
    encoder = c_make_encoder(None, str, encode_basestring_ascii, None, ": ", ", ", False, False, True)
    join = "".join
    return lambda obj: join(encoder(obj, 0))


_encode = _c_encode()
_quote = json.encoder.encode_basestring_ascii  # a str as JSON text, as _encode writes it (ASCII)
_stamp_second = -1  # the whole second _stamp_prefix was formatted for
_stamp_prefix = ""


def timestamp() -> str:
    """Now as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it
    (``2026-11-29T21:15:44.123456Z``; no fraction at a whole second), the date and time
    formatted once per second: a third of the cost of ``datetime.now(UTC).isoformat()``."""
    global _stamp_second, _stamp_prefix
    now = time.time()
    second = int(now)
    micro = round((now - second) * 1_000_000)  # rounded as datetime.fromtimestamp rounds
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    if second != _stamp_second:
        _stamp_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamp_second = second
    return f"{_stamp_prefix}.{micro:06d}Z" if micro else _stamp_prefix + "Z"
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_ANY_CASE = {**_LEVELS, **{name.lower(): value for name, value in _LEVELS.items()}}  # enabled()'s lookup
LOG_LEVEL = Setting(
    "LOG_LEVEL", "level of the structlog JSON logs (failures log at error)",
    parse=upper, default="INFO", choices=tuple(_LEVELS),
)
SETTINGS = (LOG_LEVEL,)


def compact_exc_info(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: ``exc_info`` -> ``exception`` as plain "File, line, in" frames.

    Python 3.12's default formatting re-reads every frame's source to draw ``^^^`` markers
    (about 145 µs per traceback, measured in bench/); this costs about 16 µs and keeps the
    facts a person needs. Chained causes are included.
    """
    exc = event_dict.pop("exc_info", None)
    if exc is None or exc is False:
        return event_dict
    if exc is True:
        exc = sys.exc_info()[1]
    elif isinstance(exc, tuple):
        exc = exc[1]
    if isinstance(exc, BaseException):
        event_dict["exception"] = format_exception_compact(exc)
    return event_dict


def _level_name(level: str | None = None) -> str:
    try:
        return upper(level) if level else LOG_LEVEL.read()
    except ConfigError:  # checked at cold start; a log call must never fail on it
        return LOG_LEVEL.default


def enabled(level: str) -> bool:
    """Whether a line at ``level`` is written under ``LOG_LEVEL`` (what structlog filters on)."""
    global _threshold
    if _threshold is None:
        _threshold = _LEVELS.get(_level_name(), 20)
    value = _ANY_CASE.get(level)  # "error" or "ERROR": no upper() per line
    if value is None:
        value = _LEVELS.get(level.upper(), 40)
    return value >= _threshold


def write_line(context: dict[str, Any], level: str, event: str, fields: dict[str, Any]) -> None:
    """One JSON log line, shaped like structlog's (``context`` first, then ``event``, the
    fields, ``level`` and ``timestamp``), written to stdout at once. Nothing is masked here."""
    if not enabled(level):
        return
    line = {**context, "event": event, **fields, "level": level, "timestamp": timestamp()}
    out = sys.stdout  # looked up per call, like structlog's PrintLogger: Lambda's stdout or a capture
    out.write(_encode(line) + "\n")
    out.flush()


def json_value(value: Any) -> str:
    """``value`` as JSON text, as ``write_line`` encodes it; strings and ints without the
    encoder's per-call setup (the fields of a compact failure line are mostly those)."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    return _encode(value)


def line_head(context: dict[str, Any], level: str, event: str, constant: dict[str, Any]) -> str:
    """The part of a line that is the same for many lines of a batch (context, event, level and
    ``constant`` fields): JSON text without its closing brace, for ``write_text`` callers that
    format the varying fields with ``json_value`` (``streamkit.failurelog``'s compact lines)."""
    return _encode({**context, "event": event, "level": level, **constant})[:-1]


def write_text(head: str, varying: str) -> None:
    """One line from ``line_head``'s text and the varying fields (``'"k": <json_value>, ...'``),
    with the timestamp last; written to stdout at once. The caller checked ``enabled``."""
    out = sys.stdout
    out.write(f'{head}, {varying}, "timestamp": "{timestamp()}"}}\n')
    out.flush()


def configure(level: str | None = None) -> None:
    """Configure structlog once per process (JSON to stdout, which Lambda ships to CloudWatch)."""
    global _configured, _threshold
    import structlog

    from .pii import mask_processor

    name = _level_name(level)
    _threshold = _LEVELS.get(name, 20)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            compact_exc_info,
            mask_processor,
            structlog.processors.JSONRenderer(default=str),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(name, 20)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(**context: Any) -> Any:
    """A structlog logger bound to ``context`` (consumer, policy, request id, ...)."""
    if not _configured:
        configure()
    import structlog

    return structlog.get_logger("streamkit").bind(**context)


class LazyLogger:
    """Holds the context; builds the real logger on the first log call."""

    __slots__ = ("_context", "_logger")

    def __init__(self, **context: Any):
        self._context = context
        self._logger = None

    @property
    def context(self) -> dict[str, Any]:
        """What every line of this logger carries (consumer, policy, request id...)."""
        return self._context

    def bind(self, **more: Any) -> LazyLogger:
        return LazyLogger(**{**self._context, **more})

    def __getattr__(self, method: str) -> Any:
        if self._logger is None:
            self._logger = get_logger(**self._context)
        return getattr(self._logger, method)
