"""Fixtures for the reprocess tests: queues named by convention, tables, envelope builders
(tables, queues and users themselves: ``tests.support``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.support.aws import create_consumer_queues, create_table, create_users_table

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / "reprocess" / "reprocess.py")


@pytest.fixture
def env(aws, monkeypatch):
    """Clean naming environment: default service/stage, no queue URL overrides."""
    for var in list(os.environ):
        if var.endswith("_QUEUE_URL") or var in ("SERVICE_NAME", "STAGE", "USERS_TABLE", "FAILURE_QUEUE_URL"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RETRY_BASE_DELAY_MS", "0")
    from streamkit import idempotency

    idempotency.reset_client()
    return aws


@pytest.fixture
def queues(env):
    return create_consumer_queues("search-indexer")


@pytest.fixture
def index_table(env, monkeypatch):
    monkeypatch.setenv("TEST_INDEX_TABLE", create_table("test-index"))
    return "test-index"


@pytest.fixture
def users_table(env, monkeypatch):
    create_users_table("users", stream=False)  # latest mode reads items; no test here reads its stream
    monkeypatch.setenv("USERS_TABLE", "users")
    return "users"


def index_items() -> dict[str, dict]:
    t = boto3.resource("dynamodb").Table(os.environ["TEST_INDEX_TABLE"])
    return {i["user_id"]: i for i in t.scan(ConsistentRead=True)["Items"]}


def run_cli(*args: str, extra_env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI as an operator runs it: a plain script path, against the moto server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_cli_on_a_terminal(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal (where a person sees the progress bar) and
    stdout on a pipe: (exit code, stdout, what the terminal showed)."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a new pty is 0 x 0
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            shown.extend(chunk)

    try:
        proc = subprocess.Popen([sys.executable, CLI, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        out, _ = proc.communicate(timeout=timeout)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return proc.returncode, out.decode(), shown.decode(errors="replace")
