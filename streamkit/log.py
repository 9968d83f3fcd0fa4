"""structlog JSON logs with PII masked; structlog is imported only when something is logged.

A healthy batch logs nothing per record, so a consumer on the happy path never pays for
importing structlog (measured in bench/).
"""
from __future__ import annotations

import os
import sys
from typing import Any

_configured = False
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def configure(level: str | None = None) -> None:
    """Configure structlog once per process (JSON to stdout, which Lambda ships to CloudWatch)."""
    global _configured
    import structlog

    from .pii import mask_processor

    name = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
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
