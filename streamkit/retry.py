"""Bounded in-process retries for transient failures, never past the deadline."""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .deadline import Deadline
from .errors import is_transient
from .settings import Setting

# The one place the retry defaults are written (README's settings table is generated from it).
MAX_TRANSIENT_RETRIES = Setting(
    "MAX_TRANSIENT_RETRIES",
    "in-process retries of a transient failure (throttling, 5xx, timeouts) before the policy decides",
    parse=int, default=2, low=0, high=10,
)
RETRY_BASE_DELAY_MS = Setting(
    "RETRY_BASE_DELAY_MS", "first backoff step; full jitter, doubling per retry",
    parse=int, default=50, low=0, high=10_000,
)
RETRY_MAX_DELAY_MS = Setting(
    "RETRY_MAX_DELAY_MS", "cap of one backoff wait (a server's Retry-After still wins)",
    parse=int, default=2_000, low=0, high=60_000,
)
SETTINGS = (MAX_TRANSIENT_RETRIES, RETRY_BASE_DELAY_MS, RETRY_MAX_DELAY_MS)

DEFAULT_MAX_RETRIES: int = MAX_TRANSIENT_RETRIES.default
DEFAULT_BASE_DELAY_S: float = RETRY_BASE_DELAY_MS.default / 1000
DEFAULT_MAX_DELAY_S: float = RETRY_MAX_DELAY_MS.default / 1000


@dataclass(frozen=True)
class RetryConfig:
    """How ``call_with_retries`` backs off; ``from_env`` reads the declarations above."""

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    max_delay_s: float = DEFAULT_MAX_DELAY_S

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> RetryConfig:
        """From ``settings.load(SETTINGS, ...)``'s result."""
        return cls(
            max_retries=values["MAX_TRANSIENT_RETRIES"],
            base_delay_s=values["RETRY_BASE_DELAY_MS"] / 1000,
            max_delay_s=values["RETRY_MAX_DELAY_MS"] / 1000,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, owner: str | None = None) -> RetryConfig:
        """Validated from the environment; ``ConfigError`` names a bad variable."""
        from .settings import load

        return cls.from_values(load(SETTINGS, env, owner=owner))


def backoff_delay(attempt: int, base_delay_s: float, max_delay_s: float, retry_after: float | None) -> float:
    """Full-jitter exponential backoff; a server's ``Retry-After`` is a floor."""
    delay = random.uniform(0, min(max_delay_s, base_delay_s * (2**attempt)))
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay


def call_with_retries(
    fn: Callable[[Any], Any],
    arg: Any,
    *,
    deadline: Deadline | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    base_delay_s: float = DEFAULT_BASE_DELAY_S,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    first_error: Exception | None = None,
) -> Any:
    """``fn(arg)``, retrying transient errors up to ``max_retries`` times.

    Permanent errors propagate at once. A retry whose wait would cross the deadline is not
    attempted: the last error propagates and the failure policy decides. ``first_error``
    says the first call was already made (by a hot loop that tries once before paying for
    this machinery) and failed with it.
    """
    attempt = 0
    error = first_error
    while True:
        if error is None:
            try:
                return fn(arg)
            except Exception as exc:
                error = exc
        if attempt >= max_retries or not is_transient(error):
            raise error
        delay = backoff_delay(attempt, base_delay_s, max_delay_s, getattr(error, "retry_after", None))
        if deadline is not None and not deadline.allows(delay):
            raise error
        attempt += 1
        if on_retry is not None:
            on_retry(error, attempt, delay)
        if delay > 0:
            sleep(delay)
        error = None
