"""Run a Lambda function's handler in this process, with that function's environment.

All functions share one Python process, so a function's environment is applied to
``os.environ`` only around its own cold start and each of its invocations, then restored:
the emulator invokes functions one at a time (single-threaded), never concurrently, so no
function ever sees another's variables. Each function loads its own fresh copy of its
handler module (a private module object, not the one in ``sys.modules``), so two functions
built from the same module stay independent, and ``redeploy`` is a real cold start.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class HandlerLoadError(RuntimeError):
    """The function's Handler setting cannot be imported (Lambda: Runtime.ImportModuleError)."""


@dataclass
class FunctionConfig:
    """What the emulator needs of one deployed function (read from the deployed stack)."""

    name: str
    handler: str  # "handlers/search_indexer.handler" or "handlers.search_indexer.handler"
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 6.0
    arn: str | None = None

    @property
    def function_arn(self) -> str:
        return self.arn or f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}"


def split_handler(handler: str) -> tuple[str, str]:
    """``handlers/search_indexer.handler`` -> (``handlers.search_indexer``, ``handler``)."""
    path, _, attr = handler.rpartition(".")
    if not path or not attr:
        raise HandlerLoadError(f"bad Handler setting {handler!r}: expected 'path/module.function'")
    return path.replace("/", ".").strip("."), attr


@contextmanager
def applied_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in os.environ for the duration, then restore exactly what was there."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_fresh(module_name: str) -> Any:
    """A new module object for ``module_name`` (its top level runs again: a cold start)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise HandlerLoadError(f"cannot find module {module_name!r} (is the working directory the project root?)")
    fresh = importlib.util.spec_from_file_location(module_name, spec.origin)
    module = importlib.util.module_from_spec(fresh)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # dataclasses & co. look themselves up here while executing
    try:
        fresh.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
    return module


class FunctionRuntime:
    """One function: lazily cold-started, invoked with its environment and a Lambda context."""

    def __init__(self, config: FunctionConfig):
        self.config = config
        self._handler: Callable | None = None
        self.generation = 0  # bumps on every cold start

    def _cold_start(self) -> Callable:
        module_name, attr = split_handler(self.config.handler)
        with applied_env(self.config.environment):
            module = load_fresh(module_name)
        try:
            handler = getattr(module, attr)
        except AttributeError:
            raise HandlerLoadError(
                f"module {module_name!r} has no attribute {attr!r} (Handler={self.config.handler!r})") from None
        self.generation += 1
        return handler

    def invoke(self, event: dict) -> Any:
        """Invoke like Lambda: exceptions (including cold-start errors) propagate to the caller."""
        from streamkit.testing import LambdaContext

        if self._handler is None:
            self._handler = self._cold_start()
        context = LambdaContext(timeout_s=self.config.timeout_s, function_name=self.config.name)
        loop = getattr(self._handler, "loop", None)
        if loop is not None:
            loop.forget_last_batch()  # so last_counts() never reports a previous invocation
        with applied_env(self.config.environment):
            return self._handler(event, context)

    def last_counts(self) -> dict | None:
        """The function's own metrics of its last invocation (the EMF counters its stream loop
        publishes), ``None`` when it has none (not a stream handler, or it failed before them)."""
        loop = getattr(self._handler, "loop", None)
        batch = getattr(loop, "last_batch", None)
        return batch.counts() if batch is not None else None

    def redeploy(self, environment: Mapping[str, str] | None = None) -> None:
        """A new deployment: optionally new environment variables; the next invoke cold-starts."""
        if environment is not None:
            self.config.environment = dict(environment)
        self._handler = None


def short_error(exc: BaseException) -> str:
    """``TypeName: message`` plus the innermost frame, for logs and the state file."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"
