"""``make demo`` end to end (run alone with ``pytest -m demo``)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.stack_template import template

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "artifacts" / "cloudformation-template-update-stack.json"  # the Kinesis source
PACKAGED_DYNAMODB = ROOT / "artifacts" / "dynamodb-source" / "cloudformation-template-update-stack.json"


def _template(tmp_path: Path, mutate=None, source: str = "kinesis") -> tuple[Path, str]:
    """(template, its source): the packaged template when `make package` has run, else the
    hand-written stand-in (the DynamoDB source)."""
    packaged = PACKAGED if source == "kinesis" else PACKAGED_DYNAMODB
    if packaged.exists():
        t = json.loads(packaged.read_text())
    else:
        t, source = template(), "dynamodb"
    if mutate:
        mutate(t)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(t))
    return path, source


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOCAL_ESM_STATE": str(tmp_path / "esm.json")}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run([sys.executable, "-m", "local", "demo", "--state-dir", str(tmp_path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.demo
@pytest.mark.parametrize("wanted", ["kinesis", pytest.param("dynamodb", marks=pytest.mark.slow)])
def test_demo_tells_the_story_and_every_check_passes(tmp_path, wanted):
    """`make demo` on the default source (Kinesis), and `--source dynamodb`."""
    path, source = _template(tmp_path, source=wanted)
    proc = _demo(tmp_path, "--template", str(path), "--source", source)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert ("Source: Kinesis Data Streams for DynamoDB" in out) == (source == "kinesis")
    assert "ALL CHECKS PASSED" in out and "[FAIL]" not in out
    assert "60 records captured to its failure queue" in out
    assert "crm-sync (hard-fail): blocked: True" in out
    assert "crm-sync caught up by itself: True" in out
    assert "reprocess exit 0: taken 60, succeeded 60" in out
    for check in ("search index: every user, right name", "CRM: every contact, right name",
                  "backfill rebuilt a new index from the table: every user, right name",
                  "rewind re-ran crm-sync's last ten minutes of the stream",
                  "failure, parking and on-failure queues empty"):
        assert f"[PASS] {check}" in out
    assert "380/380" in out
    state = json.loads((tmp_path / "esm.json").read_text())
    assert all(m["status"] == "caught-up" for m in state["mappings"])


@pytest.mark.demo
@pytest.mark.slow
def test_demo_exits_non_zero_when_a_promise_is_broken(tmp_path):
    """crm-sync deployed with 1 retry: Lambda discards the blocked records (the failed
    invocations to its S3 on-failure destination) instead of blocking, so the CRM misses contacts and the demo says so."""
    def one_retry(t):
        for logical, res in t["Resources"].items():
            if res["Type"] == "AWS::Lambda::EventSourceMapping" and "Crm" in logical:
                res["Properties"]["MaximumRetryAttempts"] = 1

    path, source = _template(tmp_path, one_retry)
    proc = _demo(tmp_path, "--template", str(path), "--source", source, "--users", "50")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "[FAIL] CRM: every contact, right name" in proc.stdout
    # what Lambda discarded is still in the stream: the demo's rewind of crm-sync brings it back
    assert "[PASS] CRM after the rewind: every contact, right name" in proc.stdout
    assert re.search(r"crm-sync on-failure destination: [1-9]", proc.stdout)  # failed invocations in its S3 bucket
    assert "SOME CHECKS FAILED" in proc.stdout
