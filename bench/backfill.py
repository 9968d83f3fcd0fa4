"""Backfill rate: ``reprocess.py backfill`` at 1, 4 and 8 segments against a naive
single-threaded scan-and-call loop, on the same table, in the same run.

Every contender reads the same moto table (ITEMS items, three attributes each) with
consistent Scans and sends each item through the same ``handle_record`` as the same record
(``reprocess.backfill.backfill_record``): build a search document and spend a simulated sink
latency (2 ms by default: an OpenSearch or CRM call; without it the figure measures only
moto, whose Scan costs ~0.5 ms per attribute value to serialize). So the ratios measure what
the job adds: parallel segments, the next page read while one is handled, checkpoints.

``run() -> list[dict]`` rows for ``python -m bench``; ``python -m bench.backfill`` runs alone.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ITEMS = int(os.environ.get("BENCH_BACKFILL_ITEMS", "300" if os.environ.get("BENCH_QUICK") else "2000"))
SINK_MS = float(os.environ.get("BENCH_BACKFILL_SINK_MS", "2"))
SEGMENTS = (1, 4, 8)
CONSUMER = "search-indexer"
TABLE = "bench-backfill-users"


def make_handle_record(sink_latency_s: float, seen: set):
    def handle_record(record) -> None:
        image = record.new_image or {}
        doc = {"id": record.keys["user_id"], "name": image.get("fullname"), "email": image.get("email")}
        if not doc["id"]:
            raise ValueError("no id")
        seen.add(doc["id"])
        time.sleep(sink_latency_s)

    return handle_record


def _load(n: int) -> None:
    import boto3

    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    with boto3.resource("dynamodb").Table(TABLE).batch_writer() as batch:
        for i in range(n):
            batch.put_item(Item={"user_id": f"u{i:06d}", "fullname": f"Ada Number{i}", "email": f"user{i}@example.com"})


def naive_loop(handle_record) -> int:
    """What a person writes first: one paginated Scan, one item after the other."""
    import boto3

    from reprocess.backfill import backfill_record
    from streamkit.record import StreamRecord

    done = 0
    for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
        read_at = time.time()
        for item in page.get("Items", []):
            handle_record(StreamRecord(backfill_record(item, ["user_id"], read_at=read_at, job_id="naive",
                                                       source={}, clock_skew_s=5.0)))
            done += 1
    return done


def backfill(handle_record, segments: int, store_dir: str) -> int:
    from reprocess.checkpoints import FileStore
    from reprocess.jobrun import run_job
    from reprocess.options import BackfillOptions

    summary = run_job(BackfillOptions(consumer=CONSUMER, segments=segments, users_table=TABLE),
                      store=FileStore(store_dir), handle_record=handle_record)
    assert summary["status"] == "succeeded" and summary["captured"] == 0, summary
    return summary["handled"]


def run(items: int = ITEMS, sink_ms: float = SINK_MS) -> list[dict]:
    """Items per second for each contender against the moto server at ``AWS_ENDPOINT_URL``."""
    import boto3

    from tests.support.aws import create_consumer_queues  # the failure queue a backfill captures into

    _load(items)
    try:
        create_consumer_queues(CONSUMER)
    except Exception:  # noqa: BLE001 - already there from an earlier run on this server
        pass
    rows: list[dict] = []
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        contenders = [("naive scan-and-call loop", lambda h: naive_loop(h))]
        contenders += [(f"backfill --segments {n}", lambda h, n=n: backfill(h, n, tmp)) for n in SEGMENTS]
        for name, fn in contenders:
            seen: set = set()
            t0 = time.perf_counter()
            done = fn(make_handle_record(sink_ms / 1000, seen))
            elapsed = time.perf_counter() - t0
            assert done == items and len(seen) == items, (name, done, len(seen))
            rate = done / elapsed
            row = {"contender": f"{name} (sink {sink_ms:g} ms)", "items": done, "rate": rate, "seconds": elapsed}
            if baseline is None:
                baseline = rate
            else:
                row["vs_baseline"] = rate / baseline
            rows.append(row)
    boto3.client("dynamodb").delete_table(TableName=TABLE)
    return rows


def _table(rows: list[dict]) -> str:
    lines = [f"Backfill rate, {rows[0]['items']} items per contender, moto DynamoDB",
             f"{'contender':<44}{'items/s':>10}{'seconds':>10}{'vs naive':>10}"]
    for r in rows:
        ratio = f"{r['vs_baseline']:.1f}x" if "vs_baseline" in r else "1.0x"
        lines.append(f"{r['contender']:<44}{r['rate']:>10.1f}{r['seconds']:>10.2f}{ratio:>10}")
    return "\n".join(lines)


def _standalone() -> int:
    from local.aws import EmbeddedAws

    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "bench")
    with EmbeddedAws():
        print(_table(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_standalone())
