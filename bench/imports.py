"""Cold import time of a soft-fail handler module vs ``import boto3`` (fresh interpreters).

Each sample is a new ``python -c`` process; the contenders take turns so a burst of load
from elsewhere hits all of them alike; the median per contender, minus the median of an
empty interpreter start, is reported.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 9
SLACK_ENV = {"FAILURE_POLICY": "soft-fail", "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
             "IDEMPOTENCY_TABLE": "bench-idempotency", "AWS_DEFAULT_REGION": "us-east-1"}


def _sample(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr.decode()[-300:])
    return elapsed


def run() -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POWERTOOLS_METRICS_NAMESPACE": "bench"}
    codes = {
        "interpreter start": ("pass", env),
        "import boto3": ("import boto3", env),
        "soft-fail handler module (bench)": ("import bench.softfail_handler", env),
    }
    if (ROOT / "handlers" / "slack_notifier.py").exists():
        codes["handlers/slack_notifier.py"] = ("import handlers.slack_notifier", {**env, **SLACK_ENV})
    samples: dict[str, list[float]] = {name: [] for name in codes}
    errors: dict[str, str] = {}
    names = list(codes)
    for r in range(RUNS):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if name in errors:
                continue
            try:
                samples[name].append(_sample(*codes[name]))
            except RuntimeError as exc:
                errors[name] = str(exc)
    base = statistics.median(samples.pop("interpreter start"))
    boto3_s = statistics.median(samples.pop("import boto3")) - base
    rows = [{"bench": "cold import", "contender": "import boto3", "ms": boto3_s * 1e3}]
    for name, values in samples.items():
        if name in errors:
            rows.append({"bench": "cold import", "contender": name, "error": errors[name]})
            continue
        s = statistics.median(values) - base
        rows.append({"bench": "cold import", "contender": name, "ms": s * 1e3, "vs_boto3": s / boto3_s})
    return rows
