"""One set of drain limits: the CLI, the reprocess Lambda's event and the operator API's POST
body give the same answer to the same bad value, and nothing runs."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from handlers import reprocess as fn
from reprocess.options import API_FIELDS, LAMBDA_SETTINGS, DrainOptions, OptionsError
from streamkit.errors import ConfigError
from streamkit.settings import load
from streamkit.testing import LambdaContext
from tests.support.aws import create_consumer_queues, queue_count

from .conftest import ROOT

# (wire field, bad value, CLI arguments, the error every entry point gives)
BAD = [
    ("max", 0, ["--max", "0"], "max must be an integer from 1 to 10000, got 0"),
    ("max", 10_001, ["--max", "10001"], "max must be an integer from 1 to 10000, got 10001"),
    ("concurrency", 0, ["--concurrency", "0"], "concurrency must be an integer from 1 to 8, got 0"),
    ("concurrency", 99, ["--concurrency", "99"], "concurrency must be an integer from 1 to 8, got 99"),
    ("mode", "sideways", ["--mode", "sideways"], "mode must be one of replay, latest, got 'sideways'"),
]


def via_cli(field, value, argv, capsys) -> str:
    from reprocess.reprocess import main

    assert main(["--consumer", "slack-notifier", *argv]) == 2
    return capsys.readouterr().err.strip().removeprefix("reprocess: error: ")


def via_lambda(field, value, argv, capsys) -> str:
    out = fn.handler({"consumer": "slack-notifier", field: value}, LambdaContext(timeout_s=120))
    assert out["exit_code"] == 2 and "taken" not in out
    return out["error"]


def via_api(field, value, argv, capsys) -> str:
    from opsapi import create_app

    client = create_app().test_client()
    resp = client.post("/consumers/slack-notifier/reprocess", json={field: value})
    assert resp.status_code == 400
    assert client.get("/jobs").get_json()["jobs"] == []  # nothing started
    return resp.get_json()["error"]


@pytest.mark.parametrize("entry", [via_cli, via_lambda, via_api], ids=["cli", "lambda", "api"])
@pytest.mark.parametrize("field, value, argv, error", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_every_entry_point_rejects_the_same_values_with_the_same_message(env, capsys, entry, field, value, argv, error):
    failures, _ = create_consumer_queues("slack-notifier")
    assert entry(field, value, argv, capsys) == error
    assert queue_count(failures) == 0


def test_the_lambda_validates_types_it_used_to_coerce(env):
    for event, needle in [
        ({"consumer": "slack-notifier", "max": "5"}, "max must be an integer"),
        ({"consumer": "slack-notifier", "concurrency": 2.5}, "concurrency must be an integer"),
        ({"consumer": "slack-notifier", "dryRun": "yes"}, "dryRun must be true or false"),
        ({"consumer": "slack-notifier", "maxAttempts": 0}, "maxAttempts must be an integer from 1 to 100"),
        ({"consumer": "slack-notifier", "maxx": 5}, "unknown field(s) maxx"),
        ({"consumer": 7}, "consumer must be a consumer name"),
        ([], "expected a JSON object"),
    ]:
        out = fn.handler(event, LambdaContext(timeout_s=120))
        assert out["exit_code"] == 2 and needle in out["error"], (event, out)


def test_the_api_takes_only_its_own_fields():
    with pytest.raises(OptionsError, match=r"unknown field\(s\) maxAttempts; allowed: max, mode, dryRun, concurrency"):
        DrainOptions.from_wire({"maxAttempts": 3}, consumer="crm-sync", allowed=API_FIELDS)
    opts = DrainOptions.from_wire({"max": 5, "dryRun": True}, consumer="crm-sync", allowed=API_FIELDS)
    assert (opts.consumer, opts.max_messages, opts.dry_run, opts.effective_mode) == ("crm-sync", 5, True, "latest")


def test_python_callers_get_the_same_limits():
    with pytest.raises(OptionsError, match="max must be an integer from 1 to 10000, got -1"):
        DrainOptions(consumer="crm-sync", max_messages=-1)
    with pytest.raises(OptionsError, match="waitSeconds must be an integer from 0 to 20, got 21"):
        DrainOptions(consumer="crm-sync", wait_time_s=21)
    with pytest.raises(OptionsError, match="unknown consumer 'nobody'"):
        DrainOptions(consumer="nobody")
    assert isinstance(OptionsError("x"), ConfigError)  # exit code 2 / HTTP 400 / the Lambda's error result


def test_retry_settings_and_users_table_come_from_the_environment():
    opts = DrainOptions(consumer="crm-sync")
    env = {"MAX_TRANSIENT_RETRIES": "4", "RETRY_BASE_DELAY_MS": "250", "RETRY_MAX_DELAY_MS": "900",
           "USERS_TABLE": "users"}
    got = opts.resolved(env)
    assert (got.max_retries, got.retry_base_delay_s, got.retry_max_delay_s, got.users_table) == (4, 0.25, 0.9, "users")
    explicit = dataclasses.replace(opts, max_retries=0, users_table="other").resolved(env)
    assert (explicit.max_retries, explicit.users_table) == (0, "other")  # explicit values win
    with pytest.raises(ConfigError, match="MAX_TRANSIENT_RETRIES='many'"):
        opts.resolved({"MAX_TRANSIENT_RETRIES": "many"})


@pytest.mark.parametrize("raw", ["abc", "-1", "600001"])
def test_a_bad_reprocess_margin_is_refused(raw):
    with pytest.raises(ConfigError, match=f"REPROCESS_MARGIN_MS='{raw}'"):
        load(LAMBDA_SETTINGS, {"REPROCESS_MARGIN_MS": raw}, owner="reprocess")
    assert load(LAMBDA_SETTINGS, {})["REPROCESS_MARGIN_MS"] == 15_000
    assert load(LAMBDA_SETTINGS, {"REPROCESS_MARGIN_MS": "3000"})["REPROCESS_MARGIN_MS"] == 3_000


def test_the_reprocess_lambda_checks_its_settings_at_cold_start():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(REPROCESS_MARGIN_MS="soon", MAX_TRANSIENT_RETRIES="many")
    out = subprocess.run([sys.executable, "-c", "import handlers.reprocess"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "ConfigError" in out.stderr and "REPROCESS_MARGIN_MS='soon'" in out.stderr
    assert "MAX_TRANSIENT_RETRIES='many'" in out.stderr  # every bad one at once
