"""Drain rate of the reprocess worker vs the article's reprocess loop (corrected), same run.

Contenders drain identical backlogs (BACKLOG envelopes, one fresh queue each) on the same
moto server, through the same ``handle_record``: build a search document from the record
and spend a simulated sink-call latency (2 ms and 20 ms by default) (a real consumer talks to OpenSearch,
Slack or a CRM; without that wait the figure would only measure moto).

- article loop (corrected): ``receive_message`` 10 at a time, handle each, ``delete_message``
  one by one (the article's code called a non-existent ``receive_messages`` with a queue
  name; it also never stops while anything fails, which does not matter here: all succeed);
- worker, concurrency 1 and 8: ``reprocess.worker.drain`` in replay mode.

moto SQS gets slower as the backlog grows (LOCAL-AWS-NOTES), so the backlog stays in the
hundreds; absolute rates are moto's, the ratios are the point.

``run() -> list[dict]`` rows for ``python -m bench``; ``python -m bench.drain`` runs alone.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BACKLOG = int(os.environ.get("BENCH_DRAIN_BACKLOG", "250"))
# Simulated sink call per record, in ms: a fast local call, and a typical HTTPS API call.
SINK_LATENCIES_MS = tuple(float(x) for x in os.environ.get("BENCH_DRAIN_SINK_MS", "2,20").split(","))
CONSUMER = "search-indexer"
_names = itertools.count()


def make_handle_record(sink_latency_s: float):
    def handle_record(record) -> None:
        """The same work for every contender: read the record, build a document, call a 'sink'."""
        image = record.new_image or {}
        doc = {"id": record.keys["user_id"], "name": image.get("fullname"), "plan": image.get("plan")}
        if not doc["id"]:
            raise ValueError("no id")
        time.sleep(sink_latency_s)

    return handle_record


def _fill(sqs, n: int) -> str:
    from streamkit.envelope import build_envelope, dumps, message_attributes
    from streamkit.sqsbatch import send_batch
    from streamkit.testing import make_record

    url = sqs.create_queue(QueueName=f"bench-drain-{os.getpid()}-{next(_names)}")["QueueUrl"]
    messages = []
    for i in range(n):
        item = {"user_id": f"u{i:05d}", "email": f"user{i}@example.com", "fullname": f"Ada {i}", "plan": "free"}
        record = make_record("INSERT", keys={"user_id": item["user_id"]}, new_image=item)
        env = build_envelope(
            consumer=CONSUMER, record=record, error={"type": "KeyError", "message": "'fullname'", "traceback": ""}
        )
        messages.append({"Id": str(i), "MessageBody": dumps(env), "MessageAttributes": message_attributes(CONSUMER, "KeyError")})
    assert send_batch(sqs, url, messages) == []
    return url


def article_loop(sqs, queue_url: str, handle_record) -> int:
    """The article's reprocess.py, corrected to run: one batch, handle, delete one by one."""
    import json

    from streamkit.record import StreamRecord

    done = 0
    while True:
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        messages = resp.get("Messages")
        if not messages:
            break
        for message in messages:
            body = json.loads(message["Body"])
            record = body["record"]
            try:
                handle_record(StreamRecord(record))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message.get("ReceiptHandle"))
                done += 1
            except Exception as e:  # noqa: BLE001 - the article logs and moves on
                print(e, file=sys.stderr)
    return done


def worker(sqs, queue_url: str, handle_record, concurrency: int) -> int:
    from reprocess.worker import drain

    s = drain(
        CONSUMER, queue_url=queue_url, mode="replay", handle_record=handle_record,
        concurrency=concurrency, wait_time_s=0, sqs=sqs,
    )
    assert s.conserved and s.still_failing == 0 and s.parked == 0, s.to_dict()
    return s.succeeded


def _depth(sqs, url: str) -> int:
    a = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def run(backlog: int = BACKLOG, sink_latencies_ms: tuple[float, ...] = SINK_LATENCIES_MS) -> list[dict]:
    """Drain rates (messages/s) against the moto server at ``AWS_ENDPOINT_URL``; for each sink
    latency, the article loop first (the baseline), then the worker at concurrency 1 and 8."""
    import boto3
    from botocore.config import Config

    sqs = boto3.client("sqs", config=Config(max_pool_connections=32))
    rows: list[dict] = []
    for ms in sink_latencies_ms:
        handle = make_handle_record(ms / 1000)
        contenders = [
            ("article loop", lambda url, handle=handle: article_loop(sqs, url, handle)),
            ("worker, concurrency 1", lambda url, handle=handle: worker(sqs, url, handle, 1)),
            ("worker, concurrency 8", lambda url, handle=handle: worker(sqs, url, handle, 8)),
        ]
        baseline = None
        for name, fn in contenders:
            url = _fill(sqs, backlog)
            t0 = time.perf_counter()
            done = fn(url)
            elapsed = time.perf_counter() - t0
            assert done == backlog and _depth(sqs, url) == 0, (name, done)
            sqs.delete_queue(QueueUrl=url)
            rate = done / elapsed
            label = f"{name} (sink {ms:g} ms)"
            row = {"contender": label, "messages": done, "rate": rate, "seconds": elapsed, "sink_ms": ms,
                   "name": f"drain rate: {label}", "value": rate, "unit": "messages/s"}
            if baseline is None:
                baseline = rate
            else:
                row["vs_baseline"] = rate / baseline
                row["baseline_ratio"] = row["vs_baseline"]
            rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    lines = [
        f"Drain rate, {rows[0]['messages']} messages per contender, moto SQS (receive cost grows with the backlog)",
        f"{'contender':<40}{'messages/s':>12}{'seconds':>10}{'vs article':>12}",
    ]
    for r in rows:
        ratio = f"{r['vs_baseline']:.1f}x" if "vs_baseline" in r else "1.0x"
        lines.append(f"{r['contender']:<40}{r['rate']:>12.1f}{r['seconds']:>10.2f}{ratio:>12}")
    return "\n".join(lines)


def _standalone() -> int:
    from local.aws import EmbeddedAws

    with EmbeddedAws():
        print(_table(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_standalone())
