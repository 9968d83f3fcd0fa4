"""Drain time of the reprocess worker vs the article's reprocess loop (corrected), same run.

Contenders drain identical backlogs (one fresh queue each) on the same moto server, through
the same ``handle_record``: build a search document and spend a simulated sink call
(``SINK_MS``; a real consumer talks to OpenSearch, Slack or a CRM).

- article loop (corrected): ``receive_message`` 10 at a time (short polls), handle each,
  ``delete_message`` one by one (the article's code called a non-existent
  ``receive_messages`` with a queue name);
- worker, concurrency 1 and 8: ``reprocess.worker.drain`` in replay mode with its default
  options (a 2 s long poll on the first receive).

Backlogs of 20 (where a fixed tail shows) and 2,000 (throughput). **moto** stands in for
SQS: its ``ReceiveMessage`` gets slower as the backlog grows (LOCAL-AWS-NOTES: ~0.7 s per
call at 1,000 queued), so at 2,000 the figures are mostly moto's; the ratios are the point.
The 20-message backlog takes ``REPEATS`` turns per contender (min and median); 2,000 one.

``run() -> list[dict]``; ``python -m bench.drain`` runs alone.
"""
from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BACKLOGS = tuple(int(x) for x in os.environ.get(
    "BENCH_DRAIN_BACKLOGS", "20" if os.environ.get("BENCH_QUICK") else "20,2000").split(","))
SINK_MS = float(os.environ.get("BENCH_DRAIN_SINK_MS", "5"))
REPEATS = 1 if os.environ.get("BENCH_QUICK") else 5
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

    s = drain(CONSUMER, queue_url=queue_url, mode="replay", handle_record=handle_record,
              concurrency=concurrency, sqs=sqs)  # default options: the 2 s long poll included
    assert s.conserved and s.still_failing == 0 and s.parked == 0, s.to_dict()
    return s.succeeded


def _depth(sqs, url: str) -> int:
    a = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def run(backlogs: tuple[int, ...] = BACKLOGS, sink_ms: float = SINK_MS) -> list[dict]:
    """Seconds to drain each backlog, per contender, against the moto server at ``AWS_ENDPOINT_URL``."""
    import boto3
    from botocore.config import Config

    sqs = boto3.client("sqs", config=Config(max_pool_connections=32))
    handle = make_handle_record(sink_ms / 1000)
    contenders = {
        "article loop": lambda url: article_loop(sqs, url, handle),
        "worker, concurrency 1": lambda url: worker(sqs, url, handle, 1),
        "worker, concurrency 8": lambda url: worker(sqs, url, handle, 8),
    }
    rows: list[dict] = []
    for backlog in backlogs:
        repeats = REPEATS if backlog <= 100 else 1
        times: dict[str, list[float]] = {name: [] for name in contenders}
        left: dict[str, int] = {name: 0 for name in contenders}  # still on the queue after a drain said done
        names = list(contenders)
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                url = _fill(sqs, backlog)
                t0 = time.perf_counter()
                done = contenders[name](url)
                elapsed = time.perf_counter() - t0
                assert done == backlog, (name, done, backlog)
                left[name] = max(left[name], _depth(sqs, url))  # reported with the row, not fatal: keep the figures
                sqs.delete_queue(QueueUrl=url)
                times[name].append(elapsed)
        base = statistics.median(times["article loop"])
        for name, values in times.items():
            med = statistics.median(values)
            rows.append({"section": "drain", "contender": name, "backlog": backlog, "sink_ms": sink_ms,
                         "repeats": repeats, "min_s": min(values), "median_s": med,
                         "rate": backlog / med, "vs_article": base / med, "left": left[name]})
    return rows


def _standalone() -> int:
    from local.aws import EmbeddedAws

    with EmbeddedAws():
        for r in run():
            print(f"{r['contender']:<24} backlog {r['backlog']:>5}  {r['median_s']:7.2f} s  "
                  f"{r['rate']:8.1f} msg/s  {r['vs_article']:.2f}x the article loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(_standalone())
