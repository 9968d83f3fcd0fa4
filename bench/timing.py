"""Timing that holds on a shared, noisy machine: contenders take turns (interleaved, order
rotated every round) and each keeps its fastest round, so a burst of load from elsewhere
hits every contender alike instead of one block of repetitions."""
from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_min(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds of the fastest call of each contender over ``rounds`` rounds."""
    names = list(contenders)
    best = dict.fromkeys(names, float("inf"))
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = contenders[name]
            t0 = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            if elapsed < best[name]:
                best[name] = elapsed
    return best
