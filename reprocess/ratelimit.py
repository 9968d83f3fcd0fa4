"""A token bucket over consumed read capacity, so a backfill never starves the table's traffic.

A Scan page's cost is known only after it was read (``ConsumedCapacity.CapacityUnits`` with
``ReturnConsumedCapacity=TOTAL``), so the bucket may go into debt: ``consume`` takes what the
page cost, and the next ``acquire`` waits until the debt is paid back at ``rate`` units per
second. Over any stretch longer than one page, consumption stays at ``rate`` (plus at most
one ``burst``). Shared by the threads of one process; each remote part gets its share of
the job's rate.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)  # one second's worth
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()
        self.consumed = 0.0
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, stop: threading.Event | None = None, max_wait_s: float | None = None) -> bool:
        """Wait until the bucket holds a positive amount; ``False`` if ``stop`` was set or
        ``max_wait_s`` would be exceeded first (the caller checkpoints and stops)."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens > 0:
                    return True
                wait = -self._tokens / self.rate + 1e-3
            if max_wait_s is not None and waited + wait > max_wait_s:
                return False
            if stop is not None and stop.is_set():
                return False
            step = min(wait, 0.5)  # wake up to notice a stop
            self._sleep(step)
            waited += step
            with self._lock:
                self.waited_s += step

    def consume(self, units: float) -> None:
        with self._lock:
            self._refill()
            self._tokens -= max(0.0, float(units))
            self.consumed += max(0.0, float(units))
