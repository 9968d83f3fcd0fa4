"""moto's SQS deletes under concurrency (local.moto_server): every delete that returned
success has removed its message, as on SQS, however many threads delete at once.

Without the patch, moto 5.2.5 left 10-17% of 1,000 messages deleted by 8 threads on the
queue. No error was returned for them. The worker deletes from several threads, so a drain
on moto looked as if it had lost deletes.
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from local.moto_server import patch

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 600
THREADS = 8


def _queue_left_after_concurrent_deletes(sqs) -> tuple[int, int]:
    url = sqs.create_queue(QueueName="concurrent-deletes")["QueueUrl"]
    for start in range(0, MESSAGES, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"}
                                                      for i in range(10)])
    received: list[dict] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages"):
        received += batch
    assert len(received) == MESSAGES

    def delete(chunk: list[dict]) -> int:
        resp = sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)])
        return len(resp.get("Successful", []))

    chunks = [received[i:i + 10] for i in range(0, len(received), 10)]
    with ThreadPoolExecutor(THREADS) as pool:
        deleted = sum(pool.map(delete, chunks))
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return deleted, int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_concurrent_deletes_on_the_embedded_server_all_take(aws):
    sqs = boto3.client("sqs", endpoint_url=aws, config=Config(max_pool_connections=THREADS * 2))
    assert _queue_left_after_concurrent_deletes(sqs) == (MESSAGES, 0)


def test_patch_is_idempotent_and_wraps_moto_once():
    from moto.sqs.models import Queue

    patch()
    first = Queue.delete_message
    patch()
    assert Queue.delete_message is first
    assert first.__wrapped__.__module__ == "moto.sqs.models"


@pytest.mark.timeout(120)
def test_the_server_launcher_serves_with_the_patch():
    """``python -m local.moto_server`` (the bench's moto process): moto's server, patched."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2) as resp:
                    assert resp.status == 200
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local",
                           config=Config(max_pool_connections=THREADS * 2))
        assert _queue_left_after_concurrent_deletes(sqs) == (MESSAGES, 0)
    finally:
        proc.terminate()
        proc.wait(10)
