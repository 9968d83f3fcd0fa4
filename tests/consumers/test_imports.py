"""Cold start: each handler module imports only its own vendor client library."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("opensearchpy", "slack_sdk", "httpx")


def imported_after(module: str, env: dict) -> set[str]:
    code = (f"import {module}, sys, json; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SEARCH_", "SLACK_", "CRM_", "FAILURE_"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module, env, wanted", [
    ("handlers.search_indexer", {"FAILURE_POLICY": "soft-fail", "SEARCH_URL": "sqlite:///x.db"}, set()),
    ("handlers.search_indexer", {"FAILURE_POLICY": "soft-fail", "SEARCH_URL": "https://search-x.us-east-1.es.amazonaws.com"},
     {"opensearchpy"}),
    ("handlers.slack_notifier", {"FAILURE_POLICY": "soft-fail"}, {"slack_sdk"}),
    ("handlers.crm_sync", {"FAILURE_POLICY": "hard-fail"}, {"httpx"}),
])
def test_handler_imports_only_its_own_client(module, env, wanted):
    heavy = imported_after(module, env) & set(HEAVY)
    assert heavy == wanted
