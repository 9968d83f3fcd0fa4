"""How much time is left in this invocation, minus a safety margin for wrapping up."""
from __future__ import annotations

import time
from typing import Any

from .settings import Setting

DEADLINE_MARGIN_MS = Setting(
    "DEADLINE_MARGIN_MS",
    "stop this long before the Lambda deadline and report the rest of the batch for retry",
    parse=int, default=2_000, low=0, high=60_000,
)
SETTINGS = (DEADLINE_MARGIN_MS,)
DEFAULT_MARGIN_MS: int = DEADLINE_MARGIN_MS.default


class Deadline:
    """Lambda's deadline (``context.get_remaining_time_in_millis``) or a plain time budget.

    ``expired()`` turns true ``margin_ms`` before the real end, leaving time to flush
    captures and return batch item failures instead of being killed mid-batch.
    """

    __slots__ = ("_context", "_end", "margin_s")

    def __init__(self, context: Any = None, margin_ms: int = DEFAULT_MARGIN_MS):
        self._context = context if hasattr(context, "get_remaining_time_in_millis") else None
        self._end: float | None = None
        self.margin_s = margin_ms / 1000.0

    @classmethod
    def from_seconds(cls, budget_s: float | None, margin_ms: int = 0) -> "Deadline":
        d = cls(None, margin_ms)
        if budget_s is not None:
            d._end = time.monotonic() + budget_s
        return d

    def remaining_s(self) -> float:
        """Seconds left before the margin; ``inf`` when there is no deadline."""
        if self._context is not None:
            return self._context.get_remaining_time_in_millis() / 1000.0 - self.margin_s
        if self._end is not None:
            return self._end - time.monotonic() - self.margin_s
        return float("inf")

    def expired(self) -> bool:
        return self.remaining_s() <= 0

    def allows(self, seconds: float) -> bool:
        """True when waiting ``seconds`` still ends before the margin."""
        return self.remaining_s() > seconds
