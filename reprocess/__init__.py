"""The reprocess worker: drain a consumer's failure queue through its own ``handle_record``.

``drain(consumer_name, ...) -> Summary`` is the API (see ``reprocess.worker``); the CLI is
``python reprocess/reprocess.py``; the Lambda entry point is ``handlers/reprocess.py``.
All three take their options through ``reprocess.options.DrainOptions`` (one set of limits).

Imports stay light: importing ``reprocess.options`` (the operator API does, to validate a
POST body) loads neither the worker nor boto3; the names below are loaded on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "drain": "worker",
    "DrainOptions": "options",
    "OptionsError": "options",
    "DEFAULT_MAX_ATTEMPTS": "options",
    "Summary": "summary",
    "EXIT_OK": "summary",
    "EXIT_FAILURES": "summary",
    "EXIT_USAGE": "summary",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
