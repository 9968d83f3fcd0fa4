"""``stream_handler``: build a Lambda handler for one consumer, validating its settings once."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .loop import BatchLoop, LoopSettings
from .policies import FailurePolicy, make_policy
from .record import StreamRecord

LambdaHandler = Callable[[Any, Any], dict]


def _int_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be an integer between {low} and {high} (unset it for the default {default})")
    return value


def load_settings(env: Mapping[str, str]) -> LoopSettings:
    """Loop settings from the environment (serverless.yml), checked at cold start."""
    return LoopSettings(
        max_retries=_int_setting(env, "MAX_TRANSIENT_RETRIES", 2, 0, 10),
        base_delay_s=_int_setting(env, "RETRY_BASE_DELAY_MS", 50, 0, 10_000) / 1000,
        max_delay_s=_int_setting(env, "RETRY_MAX_DELAY_MS", 2_000, 0, 60_000) / 1000,
        deadline_margin_ms=_int_setting(env, "DEADLINE_MARGIN_MS", 2_000, 0, 60_000),
    )


def stream_handler(
    name: str,
    handle_record: Callable[[StreamRecord], Any],
    *,
    policy: str | FailurePolicy | None = None,
    env: Mapping[str, str] | None = None,
    metrics: bool = True,
) -> LambdaHandler:
    """The Lambda handler for consumer ``name`` (contract 3 of DESIGN.md).

    Called at import time of the handler module, so a missing or wrong setting fails the
    cold start with a ``ConfigError`` that says what to set, instead of failing every batch.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("stream_handler needs a consumer name, e.g. stream_handler('search-indexer', handle_record)")
    if not callable(handle_record):
        raise ConfigError(f"handle_record for consumer {name!r} is not callable")
    env = dict(os.environ if env is None else env)
    bound_policy = make_policy(policy, name, env)
    settings = load_settings(env)
    consumer_metrics = None
    if metrics:
        from .metrics import ConsumerMetrics

        consumer_metrics = ConsumerMetrics(name)
    loop = BatchLoop(name, handle_record, bound_policy, settings, consumer_metrics)

    def handler(event: Any, context: Any = None) -> dict:
        return loop.run(event, context)

    handler.loop = loop  # type: ignore[attr-defined]  # for tests and the local runtime
    handler.__name__ = f"{name.replace('-', '_')}_handler"
    return handler
