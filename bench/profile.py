"""Where the time goes, for the rows that missed a target: cProfile of the streamkit contender
on that row's events (fresh events, parsed outside the profile), top functions by own time."""
from __future__ import annotations

import cProfile
import json
import pstats
from pathlib import Path

from .handler import _fail_every, streamkit_handler
from .items import event_text, kinesis_event_text

CALLS = 5
TOP = 8


def _where(func: tuple) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a builtin
    path = Path(filename)
    parts = path.parts
    for root in ("streamkit", "bench", "consumers", "reprocess", "site-packages", "python3.12"):
        if root in parts:
            parts = parts[parts.index(root) + (1 if root in ("site-packages", "python3.12") else 0):]
            break
    return f"{'/'.join(parts)}:{line} {name}"


def _profile(row: dict, queue_factory) -> tuple[str, list[str]]:
    policy = row.get("policy", "soft-fail")
    workload = row.get("workload", "3 fields")
    if row["section"] == "kinesis":
        text = kinesis_event_text(row["batch"], row["shape"])
    else:
        text = event_text(row["batch"], row["shape"], fail_every=_fail_every(row.get("failing", 0)))
    handler = streamkit_handler(policy, workload, queue_factory() if policy == "dlq-capture" else None)
    handler(json.loads(text))
    prof = cProfile.Profile()
    for _ in range(CALLS):
        event = json.loads(text)
        prof.enable()
        handler(event)
        prof.disable()
        del event
    stats = pstats.Stats(prof)
    total = stats.total_tt or 1e-9
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:TOP]  # (cc, nc, tt, ct, callers)
    lines = [f"  - {tt / total:5.1%} own, {ct / total:5.1%} with callees: `{_where(func)}` ({nc:,} calls)"
             for func, (cc, nc, tt, ct, callers) in top]
    label = (f"{row['section']}: {row['shape']} × {row['batch']:,}, "
             + (f"{policy}, {row['failing']}% failing" if row["section"] == "failure" else workload))
    return label, lines


def section(missed: list[dict], queue_factory) -> str:
    seen, parts = set(), []
    for row in missed:
        key = (row["section"], row["shape"], row["batch"], row.get("policy"), row.get("failing"), row.get("workload"))
        if key in seen:
            continue
        seen.add(key)
        label, lines = _profile(row, queue_factory)
        parts.append(f"- **{label}** (cProfile, {CALLS} calls; profiling inflates small functions):\n" + "\n".join(lines))
    return ("## Where the time goes in the rows that missed a target\n\n"
            "Top functions of the streamkit contender by their own time. Read together with the "
            "contenders' columns above: a miss can also come from the baseline doing less work (e.g. "
            "Powertools neither logs nor captures).\n\n" + "\n".join(parts))
