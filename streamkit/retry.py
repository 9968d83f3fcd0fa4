"""Bounded in-process retries for transient failures, never past the deadline."""
from __future__ import annotations

import random
import time
from typing import Any, Callable

from .deadline import Deadline
from .errors import is_transient

DEFAULT_MAX_RETRIES = 2
DEFAULT_BASE_DELAY_S = 0.05
DEFAULT_MAX_DELAY_S = 2.0


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
