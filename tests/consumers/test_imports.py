"""Cold start: each handler module imports only its own vendor client library."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("opensearchpy", "slack_sdk", "httpx")


def run(module: str, env: dict) -> subprocess.CompletedProcess:
    code = (f"import {module}, sys, json; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SEARCH_", "SLACK_", "CRM_", "FAILURE_"))}
    base = {k: v for k, v in base.items() if k not in ("IDEMPOTENCY_TABLE", "AWS_LAMBDA_FUNCTION_NAME")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def imported_after(module: str, env: dict) -> set[str]:
    out = run(module, env)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module, env, wanted", [
    ("handlers.search_indexer", {"FAILURE_POLICY": "soft-fail", "SEARCH_URL": "sqlite:///x.db"}, set()),
    ("handlers.search_indexer", {"FAILURE_POLICY": "soft-fail", "SEARCH_URL": "https://search-x.us-east-1.es.amazonaws.com"},
     {"opensearchpy"}),
    ("handlers.slack_notifier", {"FAILURE_POLICY": "soft-fail", "IDEMPOTENCY_TABLE": "t",
                                 "SLACK_WEBHOOK_URL_PARAM": "/p"}, set()),  # urllib: no slack_sdk
    ("handlers.crm_sync", {"FAILURE_POLICY": "hard-fail", "CRM_BASE_URL": "https://crm", "CRM_TOKEN_PARAM": "/p",
                           "IDEMPOTENCY_TABLE": "t"},
     {"httpx"}),
])
def test_handler_imports_only_its_own_client(module, env, wanted):
    heavy = imported_after(module, env) & set(HEAVY)
    assert heavy == wanted


@pytest.mark.parametrize("module, env, missing", [
    ("handlers.slack_notifier", {"FAILURE_POLICY": "soft-fail", "SLACK_WEBHOOK_URL": "http://x"}, "IDEMPOTENCY_TABLE"),
    ("handlers.slack_notifier", {"FAILURE_POLICY": "soft-fail", "IDEMPOTENCY_TABLE": "t"}, "SLACK_WEBHOOK_URL_PARAM"),
    ("handlers.crm_sync", {"FAILURE_POLICY": "hard-fail", "CRM_TOKEN": "x"}, "CRM_BASE_URL"),
    ("handlers.crm_sync", {"FAILURE_POLICY": "hard-fail", "CRM_BASE_URL": "http://x"}, "CRM_TOKEN_PARAM"),
    ("handlers.search_indexer", {"FAILURE_POLICY": "soft-fail", "AWS_LAMBDA_FUNCTION_NAME": "f"}, "SEARCH_URL"),
    ("handlers.search_indexer", {"SEARCH_URL": "sqlite:///x.db"}, "FAILURE_POLICY"),
])
def test_missing_settings_fail_the_cold_start_naming_the_fix(module, env, missing):
    out = run(module, env)
    assert out.returncode != 0
    assert "ConfigError" in out.stderr and missing in out.stderr
