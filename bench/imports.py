"""Cold import time of a soft-fail handler module vs ``import boto3`` (fresh interpreters)."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time_import(code: str, runs: int = 9, env_extra: dict | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POWERTOOLS_METRICS_NAMESPACE": "bench", **(env_extra or {})}
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run() -> list[dict]:
    base = _time_import("pass")
    boto3_s = _time_import("import boto3") - base
    rows = [{"bench": "cold import", "contender": "import boto3", "ms": boto3_s * 1e3}]
    ours = _time_import("import bench.softfail_handler") - base
    rows.append({"bench": "cold import", "contender": "soft-fail handler module (bench)", "ms": ours * 1e3, "vs_boto3": ours / boto3_s})
    slack = ROOT / "handlers" / "slack_notifier.py"
    if slack.exists():
        try:
            s = _time_import(
                "import handlers.slack_notifier",
                env_extra={"FAILURE_POLICY": "soft-fail", "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                           "IDEMPOTENCY_TABLE": "bench-idempotency", "AWS_DEFAULT_REGION": "us-east-1"},
            ) - base
            rows.append({"bench": "cold import", "contender": "handlers/slack_notifier.py", "ms": s * 1e3, "vs_boto3": s / boto3_s})
        except subprocess.CalledProcessError as exc:
            rows.append({"bench": "cold import", "contender": "handlers/slack_notifier.py", "error": exc.stderr.decode()[-200:]})
    return rows
