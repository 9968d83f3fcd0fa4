"""Cold start per handler (the whole process: interpreter, imports, settings checked,
clients made) and its first invocation, against a process that only runs ``import boto3``.

Each sample is a new ``python`` process running a handler module as Lambda's runtime would
import it (its function's environment, as serverless.yml sets it; sinks pointing at a closed
port, queues on the bench's moto server), then invoking it once with one record that fails
before any sink call (an INSERT without NewImage): the first failure log line, and under
dlq-capture the first capture sent to SQS. Contenders take turns; medians of ``RUNS``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 2 if os.environ.get("BENCH_QUICK") else 9
CLOSED = "http://127.0.0.1:9"  # nothing listens: no sink is contacted at import or by the failing record

# Distributions a stream function's package does not ship (package per function: the API's
# Flask stack and CLI-only extras), installed in the venv all the same: importing them is
# blocked in the probe, as their absence would on Lambda (httpx imports click for its CLI
# when it finds it, for one).
NOT_SHIPPED = ("flask", "werkzeug", "click", "jinja2", "itsdangerous", "blinker", "markupsafe", "pygments",
               "serverless_wsgi", "rich")

PROBE = r"""
import json, sys, time

class NotShipped:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {not_shipped!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in this function's package)", name=name)
        return None

sys.meta_path.insert(0, NotShipped())
t0 = time.perf_counter()
import {module} as m
t1 = time.perf_counter()
from streamkit.testing import LambdaContext, make_event, make_record
event = json.loads(json.dumps(make_event([make_record("INSERT", keys={{"user_id": "u1"}})])))
t2 = time.perf_counter()
m.handler(event, LambdaContext(timeout_s=60))
t3 = time.perf_counter()
sys.stdout.flush()
print("\nPROBE " + json.dumps({{"import_s": t1 - t0, "first_s": t3 - t2}}))
"""


def consumer_env(queue_url: str) -> dict[str, dict[str, str]]:
    return {
            "handlers.search_indexer": {"FAILURE_POLICY": "dlq-capture", "SEARCH_URL": CLOSED, "FAILURE_QUEUE_URL": queue_url},
        "handlers.slack_notifier": {"FAILURE_POLICY": "soft-fail", "SLACK_WEBHOOK_URL": CLOSED + "/hook",
                                    "IDEMPOTENCY_TABLE": "bench-idempotency"},
        "handlers.crm_sync": {"FAILURE_POLICY": "hard-fail", "CRM_BASE_URL": CLOSED, "CRM_TOKEN": "bench",
                              "IDEMPOTENCY_TABLE": "bench-idempotency"},
    }


def _sample(code: str, env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-400:])
    probe = {}
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE "):
            probe = json.loads(line[6:])
    return elapsed, probe


def run(queue_url: str) -> list[dict]:
    base = {**os.environ, "PYTHONPATH": str(ROOT), "POWERTOOLS_METRICS_NAMESPACE": "bench",
            "AWS_LAMBDA_FUNCTION_NAME": "bench"}
    contenders = {"interpreter start": ("pass", base), "import boto3": ("import boto3", base)}
    for module, env in consumer_env(queue_url).items():
        contenders[module] = (PROBE.format(module=module, not_shipped=set(NOT_SHIPPED)), {**base, **env})
    # what dlq-capture adds at cold start: boto3 and the SQS client
    contenders["boto3 + SQS client"] = ("import boto3; from streamkit.awsclient import make_client; make_client('sqs')",
                                        base)
    samples: dict[str, list[tuple[float, dict]]] = {name: [] for name in contenders}
    errors: dict[str, str] = {}
    names = list(contenders)
    for r in range(RUNS):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if name in errors:
                continue
            try:
                samples[name].append(_sample(*contenders[name]))
            except RuntimeError as exc:
                errors[name] = str(exc)
    start = statistics.median(s for s, _ in samples.pop("interpreter start"))
    boto3_process = statistics.median(s for s, _ in samples.pop("import boto3"))
    client_process = statistics.median(s for s, _ in samples.pop("boto3 + SQS client"))
    rows = [{"section": "cold start", "contender": "import boto3", "process_ms": boto3_process * 1e3,
             "import_ms": (boto3_process - start) * 1e3, "start_ms": start * 1e3},
            {"section": "cold start", "contender": "import boto3 + make the SQS client", "process_ms": client_process * 1e3,
             "import_ms": (client_process - start) * 1e3}]
    for name, values in samples.items():
        if name in errors:
            rows.append({"section": "cold start", "contender": name, "error": errors[name]})
            continue
        import_s = statistics.median(p["import_s"] for _, p in values)
        first_s = statistics.median(p["first_s"] for _, p in values)
        # the handler's process up to the end of its import: interpreter start + import
        process_s = start + import_s
        rows.append({"section": "cold start", "contender": name, "process_ms": process_s * 1e3,
                     "import_ms": import_s * 1e3, "first_ms": first_s * 1e3,
                     "vs_boto3_process": process_s / boto3_process,
                     "vs_boto3_import": import_s / (boto3_process - start)})
    return rows
