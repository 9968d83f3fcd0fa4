"""checkov over the packaged templates: every finding is fixed or a listed false positive.

checkov (pinned, requirements-checkov.txt) runs from its own venv, .venv-checkov (`make test`
builds it: it pins library versions the project's .venv cannot share). deploy/checkov-skips.yaml
is the commented list of false positives for this design; a finding not in it fails the test,
and so does an entry that no longer matches a finding.
"""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from .conftest import EXISTING_TABLE_TEMPLATE, ROOT, TEMPLATE

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIPS = ROOT / "deploy" / "checkov-skips.yaml"


def skips() -> list[dict]:
    return yaml.safe_load(SKIPS.read_text())


def findings(path) -> list[tuple[str, str]]:
    """(check id, logical id) of every failed check."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make checkov` (make test does it first)")
    proc = subprocess.run([str(CHECKOV), "-f", str(path), "--framework", "cloudformation", "-o", "json",
                           "--quiet", "--compact", "--skip-download"], capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    reports = out if isinstance(out, list) else [out]
    return [(c["check_id"], c["resource"].split(".", 1)[1])
            for r in reports for c in r.get("results", {}).get("failed_checks", [])]


@pytest.fixture(scope="module")
def all_findings() -> dict[str, list[tuple[str, str]]]:
    return {"dev": findings(TEMPLATE), "existing-table": findings(EXISTING_TABLE_TEMPLATE)}


def skipped(check: str, resource: str) -> bool:
    return any(s["check"] == check and ("*" in s["resources"] or resource in s["resources"]) for s in skips())


def test_every_checkov_finding_is_fixed_or_a_listed_false_positive(all_findings):
    unexplained = {name: sorted({f for f in found if not skipped(*f)}) for name, found in all_findings.items()}
    assert unexplained == {"dev": [], "existing-table": []}, "fix these, or list them with a reason in " + str(SKIPS)


def test_no_stale_skips(all_findings):
    found = {f for fs in all_findings.values() for f in fs}
    for s in skips():
        assert any(check == s["check"] and ("*" in s["resources"] or r in s["resources"]) for check, r in found), (
            f"{s['check']} no longer fails on {s['resources']}: remove it from {SKIPS.name}")


def test_every_skip_says_why():
    entries = skips()
    assert entries and len({s["check"] for s in entries}) == len(entries)
    for s in entries:
        assert set(s) == {"check", "resources", "why"}, s
        assert s["resources"] and len(s["why"].split()) >= 15, s["check"]


def test_checkov_reports_a_real_problem(tmp_path, template):
    broken = json.loads(json.dumps(template))
    del broken["Resources"]["FailureBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    new = [f for f in findings(path) if not skipped(*f)]
    assert any(r == "FailureBucket" for _, r in new), new
