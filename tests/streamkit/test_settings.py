"""Settings as data: every declared setting fails the cold start when wrong, naming itself and the
fix; the README's table is the declarations'."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from consumers.registry import CONSUMERS, consumer_handler
from streamkit import ConfigError, stream_handler
from streamkit.handler import FRAMEWORK_SETTINGS
from streamkit.policies import SETTINGS as POLICY_SETTINGS
from streamkit.policies import DlqCapture
from streamkit.settings import IN_LAMBDA, Setting, load, markdown_table, replace_table

from .helpers import ROOT

# A valid environment per consumer, under its default policy (dlq-capture brings its own settings).
GOOD_ENV = {
    "search-indexer": {"FAILURE_POLICY": "dlq-capture", "FAILURE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
                       "SEARCH_URL": "sqlite:///x.db", "AWS_LAMBDA_FUNCTION_NAME": "userstream-dev-search-indexer"},
    "slack-notifier": {"FAILURE_POLICY": "soft-fail", "SLACK_WEBHOOK_URL_PARAM": "/p", "IDEMPOTENCY_TABLE": "t"},
    "crm-sync": {"FAILURE_POLICY": "hard-fail", "CRM_BASE_URL": "https://crm", "CRM_TOKEN_PARAM": "/p",
                 "IDEMPOTENCY_TABLE": "t"},
}
for _env in GOOD_ENV.values():  # every consumer has its circuit breaker, as serverless.yml deploys it
    _env.update(CIRCUIT_FAILURES="5", CIRCUIT_TABLE="circuits")
# Free text with no wrong value: nothing to reject (each is optional).
FREE_TEXT = {"FAILURE_BUCKET", "POWERTOOLS_METRICS_NAMESPACE", "SEARCH_INDEX", "SLACK_WEBHOOK_URL_PARAM",
             "CRM_TOKEN_PARAM", "LEDGER_TABLE"}  # LEDGER_TABLE: a table name, optional (unset: no ledger)


def declarations(consumer: str) -> list[Setting]:
    out = [*FRAMEWORK_SETTINGS, *POLICY_SETTINGS, *CONSUMERS[consumer].settings()]
    if GOOD_ENV[consumer]["FAILURE_POLICY"] == "dlq-capture":
        out += DlqCapture.SETTINGS
    return list({s.name: s for s in out}.values())


def bad_values(s: Setting) -> list[str | None]:
    """Values ``s`` must refuse: ``None`` means "unset" (for a required setting)."""
    out: list[str | None] = []
    if s.required:
        out.append(None)
    if s.parse in (int, float):
        out += ["many", "nan", str(s.low - 1) if s.low is not None else None, str(s.high + 1) if s.high else None]
        if s.parse is int:
            out.append("1.5")
    elif s.choices or s.parse is not str:
        out += [v for v in ("nope", "ftp://nope") if _refused(s, v)]
    return [v for v in dict.fromkeys(out) if v is not None or s.required]


def _refused(s: Setting, raw: str) -> bool:
    try:
        s.parse_text(raw)
    except ConfigError:
        return True
    return False


SETTING = {s.name: s for c in GOOD_ENV for s in declarations(c)}
CASES = [
    pytest.param(consumer, s.name, bad, id=f"{consumer}:{s.name}={bad}")
    for consumer in GOOD_ENV
    for s in declarations(consumer)
    for bad in bad_values(s)
]


def test_every_declared_setting_can_be_checked():
    checked = {name for _c, name, _bad in (p.values for p in CASES)}
    every = {s.name for c in GOOD_ENV for s in declarations(c)}
    assert every - checked == FREE_TEXT  # a new setting without bounds must be a deliberate choice


@pytest.mark.parametrize("consumer, name, bad", CASES)
def test_bad_setting_fails_the_cold_start_naming_it(consumer, name, bad):
    env = dict(GOOD_ENV[consumer])
    if bad is None:
        env.pop(name, None)
        env.pop(SETTING[name].either or "", None)  # neither CRM_TOKEN nor CRM_TOKEN_PARAM
    else:
        env[name] = bad
    with pytest.raises(ConfigError) as info:
        consumer_handler(consumer, env=env, metrics=False)
    message = str(info.value)
    assert name in message and f"consumer {consumer!r}" in message
    assert "set it" in message or "unset it" in message  # the fix, not only the complaint


@pytest.mark.parametrize("consumer", GOOD_ENV)
def test_good_settings_start(consumer):
    handler = consumer_handler(consumer, env=GOOD_ENV[consumer], metrics=False)
    assert handler.loop.consumer == consumer


def test_all_problems_in_one_error():
    env = {"FAILURE_POLICY": "hard-fail", "MAX_TRANSIENT_RETRIES": "x", "CRM_TIMEOUT_S": "0", "CRM_TOKEN": "t"}
    with pytest.raises(ConfigError) as info:
        consumer_handler("crm-sync", env=env, metrics=False)
    message = str(info.value)
    assert "4 settings to fix" in message
    for name in ("MAX_TRANSIENT_RETRIES", "CRM_TIMEOUT_S", "CRM_BASE_URL", "IDEMPOTENCY_TABLE"):
        assert name in message


def test_loop_settings_come_from_the_declarations():
    handler = stream_handler("c", lambda r: None, policy="soft-fail", metrics=False,
                             env={"MAX_TRANSIENT_RETRIES": "4", "RETRY_BASE_DELAY_MS": "10", "DEADLINE_MARGIN_MS": ""})
    s = handler.loop.settings
    assert (s.max_retries, s.base_delay_s, s.max_delay_s, s.deadline_margin_ms) == (4, 0.01, 2.0, 2000)


def test_setting_read_is_parsed_once_per_value_and_empty_is_the_default():
    calls = []

    def parse(text):
        calls.append(text)
        return int(text)

    s = Setting("X_S", "a test setting", parse=parse, default=7, low=1, high=9)
    assert s.read({}) == 7 and s.read({"X_S": ""}) == 7
    assert [s.read({"X_S": "3"}) for _ in range(5)] == [3] * 5 and calls == ["3"]
    with pytest.raises(ConfigError, match=r"X_S='10': expected .*unset it for the default 7"):
        s.read({"X_S": "10"})


def test_require_names_the_owner_and_the_fix():
    url = Setting("U", "where things go", required=IN_LAMBDA, default="local")
    assert url.require({}) == "local"
    with pytest.raises(ConfigError, match="^me: U is not set in Lambda: where things go; set it"):
        url.require({"AWS_LAMBDA_FUNCTION_NAME": "f"}, owner="me")


def test_required_when_and_either():
    url = Setting("U", "where", required=IN_LAMBDA)
    assert load([url], {}) == {"U": None}
    with pytest.raises(ConfigError, match="U is not set in Lambda"):
        load([url], {"AWS_LAMBDA_FUNCTION_NAME": "f"})
    token = Setting("T", "token", required=True, either="T_PARAM")
    assert load([token], {"T_PARAM": "/p"}) == {"T": None}
    with pytest.raises(ConfigError, match="T or T_PARAM is not set"):
        load([token], {}, owner="x")


def test_consumer_handler_by_module_name_and_unknown():
    handler = consumer_handler("handlers.crm_sync", env=GOOD_ENV["crm-sync"], metrics=False)
    assert handler.loop.consumer == "crm-sync"
    with pytest.raises(KeyError, match="known consumers"):
        consumer_handler("handlers.nope")


def test_bad_value_fails_a_real_handler_import():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FAILURE_POLICY": "hard-fail",
           "CRM_BASE_URL": "https://crm", "CRM_TOKEN": "t", "CRM_TIMEOUT_S": "soon"}
    proc = subprocess.run([sys.executable, "-c", "import handlers.crm_sync"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and "CRM_TIMEOUT_S='soon'" in proc.stderr


# --- the README's table --------------------------------------------------------------------------
def _script():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_settings_table_matches_the_declarations():
    script = _script()
    text = script.README.read_text()
    assert script.updated_readme(text) == text, "run: python scripts/settings_table.py --write"
    for consumer in GOOD_ENV:  # every declared setting has its row
        for s in declarations(consumer):
            assert f"| `{s.name}` |" in text


def test_table_rows_and_markers():
    a = Setting("A_MS", "first", parse=int, default=5, low=0, high=10)
    b = Setting("B", "second | with a pipe", required=True)
    table = markdown_table([("x", (a, b)), ("y", (a,))])
    assert "| `A_MS` | x, y |  | `5` | an integer from 0 to 10 | first |" in table
    assert "| `B` | x | yes |  | text | second \\| with a pipe |" in table
    text = ("before\n<!-- settings-table: generated from the SETTINGS declarations; scripts/settings_table.py -->\n"
            "old\n<!-- /settings-table -->\nafter")
    assert replace_table(text, "T").split("\n")[1:4] == [text.split("\n")[1], "T", "<!-- /settings-table -->"]
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers", "T")
