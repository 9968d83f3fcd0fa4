"""``stream_handler``: build a Lambda handler for one consumer, validating its settings once."""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import circuit as _circuit
from . import log as _log
from . import metrics as _metrics
from .errors import ConfigError
from .loop import BatchLoop, LoopSettings
from .policies import SETTINGS as POLICY_SETTINGS
from .policies import DlqCapture, FailurePolicy, HardFail, make_policy
from .record import StreamRecord
from .settings import Setting, load, problems, raise_problems

LambdaHandler = Callable[[Any, Any], dict]

# What every stream function reads besides its policy's and its consumer's own settings.
FRAMEWORK_SETTINGS: tuple[Setting, ...] = LoopSettings.SETTINGS + _circuit.SETTINGS + _log.SETTINGS + _metrics.SETTINGS


def framework_settings() -> list[tuple[str, tuple[Setting, ...]]]:
    """(reader, declarations) of streamkit's own settings, for the README's table."""
    return [
        ("every stream function", FRAMEWORK_SETTINGS),
        ("every stream function", POLICY_SETTINGS),
        ("dlq-capture consumers", DlqCapture.SETTINGS),
        ("hard-fail consumers", HardFail.SETTINGS),
    ]


def load_settings(env: Mapping[str, str]) -> LoopSettings:
    """Loop settings from the environment (serverless.yml), checked at cold start."""
    return LoopSettings.from_values(load(LoopSettings.SETTINGS, env))


def stream_handler(
    name: str,
    handle_record: Callable[[StreamRecord], Any],
    *,
    policy: str | FailurePolicy | None = None,
    settings: Iterable[Setting] = (),
    warm_up: Callable[[], Any] | None = None,
    slowest_call_s: float | Callable[[], float] | None = None,
    env: Mapping[str, str] | None = None,
    metrics: bool = True,
) -> LambdaHandler:
    """The Lambda handler for consumer ``name`` (contract 3 of DESIGN.md).

    Called at import time of the handler module, so a missing or wrong setting fails the
    cold start with a ``ConfigError`` that says what to set, instead of failing every batch.
    Checked together, in one error: the loop's settings, the policy's (``FAILURE_POLICY``,
    dlq-capture's queue) and ``settings``, the consumer's own declarations (a consumer module's
    ``SETTINGS``; ``consumers.registry.consumer_handler`` passes them). ``warm_up`` runs after
    the checks, during init (e.g. importing the sink's client library).

    ``slowest_call_s`` (seconds, or a function of the consumer's settings: its module's
    ``slowest_call_s``) is the longest one record can wait on its sink, from the sink client's
    timeouts; it is added to ``DEADLINE_MARGIN_MS``, so no record or retry starts unless even
    a hanging sink lets it end before the deadline. ``CIRCUIT_FAILURES`` > 0 puts the sink
    behind a circuit breaker (``streamkit.circuit``; its state in ``CIRCUIT_TABLE``).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("stream_handler needs a consumer name, e.g. stream_handler('search-indexer', handle_record)")
    if not callable(handle_record):
        raise ConfigError(f"handle_record for consumer {name!r} is not callable")
    env = dict(os.environ if env is None else env)
    found = problems((*FRAMEWORK_SETTINGS, *settings), env)
    bound_policy = None
    try:
        bound_policy = make_policy(policy, name, env)
    except ConfigError as exc:
        found.insert(0, str(exc).removeprefix(f"consumer {name!r}: "))
    raise_problems(found, owner=f"consumer {name!r}")
    assert bound_policy is not None
    breaker = _circuit.CircuitBreaker.from_settings(name, load(_circuit.SETTINGS, env))
    slowest = slowest_call_s() if callable(slowest_call_s) else (slowest_call_s or 0.0)
    loop_settings = dataclasses.replace(load_settings(env), slowest_call_ms=math.ceil(float(slowest) * 1000))
    if warm_up is not None:
        warm_up()
    consumer_metrics = None
    if metrics:
        from .metrics import ConsumerMetrics

        consumer_metrics = ConsumerMetrics(name)
    loop = BatchLoop(name, handle_record, bound_policy, loop_settings, consumer_metrics, breaker=breaker)

    def handler(event: Any, context: Any = None) -> dict:
        return loop.run(event, context)

    handler.loop = loop  # type: ignore[attr-defined]  # for tests and the local runtime
    handler.__name__ = f"{name.replace('-', '_')}_handler"
    return handler
