"""structlog JSON logs with PII masked; structlog is imported only when something is logged.

A healthy batch logs nothing per record, so a consumer on the happy path never pays for
importing structlog (measured in bench/).
"""
from __future__ import annotations

import sys
from typing import Any

from .errors import ConfigError
from .settings import Setting, upper

_configured = False
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
LOG_LEVEL = Setting(
    "LOG_LEVEL", "level of the structlog JSON logs (failures log at error)",
    parse=upper, default="INFO", choices=tuple(_LEVELS),
)
SETTINGS = (LOG_LEVEL,)


def compact_exc_info(_logger: Any, _method: str, event_dict: dict) -> dict:
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


def format_exception_compact(exc: BaseException) -> str:
    import traceback

    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.StackSummary.extract(traceback.walk_tb(current.__traceback__), lookup_lines=False)
        block = ["Traceback (most recent call last):\n"]
        block += [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in frames]
        block += traceback.format_exception_only(type(current), current)
        parts.insert(0, "".join(block))
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        current = nxt
    return "\nThe above exception led to:\n\n".join(parts)


def configure(level: str | None = None) -> None:
    """Configure structlog once per process (JSON to stdout, which Lambda ships to CloudWatch)."""
    global _configured
    import structlog

    from .pii import mask_processor

    try:
        name = upper(level) if level else LOG_LEVEL.read()
    except ConfigError:  # checked at cold start; a log call must never fail on it
        name = LOG_LEVEL.default
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

    def bind(self, **more: Any) -> "LazyLogger":
        return LazyLogger(**{**self._context, **more})

    def __getattr__(self, method: str) -> Any:
        if self._logger is None:
            self._logger = get_logger(**self._context)
        return getattr(self._logger, method)
