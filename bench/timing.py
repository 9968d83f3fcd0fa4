"""Timing that holds on a shared, noisy machine: contenders take turns (interleaved, order
rotated every round) so a burst of load from elsewhere hits every contender alike; each keeps
its fastest round (``min``) and its median. A ``setup`` runs before each timed call, untimed:
the benchmarks use it to parse a fresh event per call, as Lambda delivers one."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stats:
    min: float
    median: float

    def per(self, n: int) -> Stats:
        return Stats(self.min / n, self.median / n)

    def ratio(self, other: Stats) -> Stats:
        """This contender's time over ``other``'s, for the min and for the median."""
        return Stats(self.min / other.min, self.median / other.median)


# The clock of CPU-bound rows: this process's CPU time. A round of several ms (a 20 KB image
# set, a batch of 0.4-4 MB Kinesis events) is cut by the scheduler on a loaded 2-core machine,
# so wall time counts other processes' turns, differently for each contender and round (the
# 20 KB deserializer row read 1.2x to 4.4x between runs of the same code by wall time, 1.8x
# to 2.1x by CPU time). Rows where a contender waits on another process (moto) keep wall time.
CPU = time.process_time
WALL = time.perf_counter


def interleaved(contenders: dict[str, Callable[[Any], object]], rounds: int,
                setup: Callable[[], Any] | None = None, clock: Callable[[], float] = WALL) -> dict[str, Stats]:
    """Seconds per call of each contender: ``fn(setup())``, only the call timed (by ``clock``)."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            arg = setup() if setup is not None else None
            fn = contenders[name]
            t0 = clock()
            fn(arg)
            elapsed = clock() - t0
            del arg  # freed outside the timing, as Lambda's runtime drops the event after the call
            samples[name].append(elapsed)
    return {name: Stats(min(v), statistics.median(v)) for name, v in samples.items()}


def interleaved_min(contenders: dict[str, Callable[[], object]], rounds: int,
                    clock: Callable[[], float] = WALL) -> dict[str, float]:
    """Seconds of the fastest call of each contender over ``rounds`` rounds (no argument)."""
    stats = interleaved({name: (lambda _arg, fn=fn: fn()) for name, fn in contenders.items()}, rounds, clock=clock)
    return {name: s.min for name, s in stats.items()}
