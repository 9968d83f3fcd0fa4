"""The operator page in real chromium (Debian's, through Playwright from PyPI; never a downloaded
browser), against the API on moto: each visible behaviour of issue 12 end to end."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from tests.support.aws import create_consumer_queues, queue_depth

from .conftest import capture_failures

ROOT = Path(__file__).resolve().parents[2]
UNAVAILABLE = ROOT / ".venv" / ".chromium-unavailable"  # written by scripts/ensure-chromium.sh (make test)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.browser


@contextmanager
def serve(config: dict):
    """The app on a free loopback port (werkzeug, threaded), against moto."""
    from werkzeug.serving import make_server

    from opsapi import create_app

    app = create_app({"LEDGER_TTL_S": 0, "REFRESH_MS": 700, "DRAIN_OPTIONS": {"wait_time_s": 0}, **config})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def browser_page():
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if chromium is None:
        why = UNAVAILABLE.read_text().strip() if UNAVAILABLE.exists() else "`make test` installs it when it can"
        pytest.skip(f"Debian's chromium is not installed and could not be: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            page.csp_errors = csp_errors  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def shot(page, name: str) -> None:
    where = os.environ.get("OPSAPI_SCREENSHOT")  # a path: look at the page yourself
    if where:
        page.screenshot(path=where.removesuffix(".png") + f"-{name}.png", full_page=True)


def test_badges_show_blocked_dropping_and_degraded_with_the_real_error_and_charts(incident):
    from playwright.sync_api import expect

    incident.write(20, v2=False)
    incident.write(6, v2=True)
    incident.run()
    with serve({}) as (url, _app), browser_page() as page:
        page.goto(url)
        expect(page.locator("#badge-crm-sync")).to_have_text("blocked")
        expect(page.locator("#badge-slack-notifier")).to_have_text("dropping")
        expect(page.locator("#badge-search-indexer")).to_have_text("degraded")
        expect(page.locator("#blocking-crm-sync")).to_have_text("KeyError: 'fullname'")
        expect(page.locator("#reasons-crm-sync")).to_contain_text("failed invocations of 101 allowed")
        expect(page.locator("#reasons-crm-sync")).not_to_contain_text("batch item failure")
        expect(page.locator("#attempts-crm-sync")).to_contain_text(" of 101")
        expect(page.locator("#types-search-indexer")).to_contain_text("KeyError \u00d76")
        expect(page.locator("#dropped-slack-notifier")).to_contain_text("6 in the last 3 h")
        # charts: small SVG lines with the emulator's minutes in them
        # (the incident may span a minute boundary: one or two points per line)
        for cls in ("ok", "bad"):
            line = page.locator(f"#chart-search-indexer-records polyline.{cls}")
            expect(line).to_have_attribute("data-points", re.compile(r"^[12]$"))
        caption = page.locator("#charts-search-indexer figcaption").nth(2)
        expect(caption).to_contain_text("handled / failed per minute")
        expect(caption).to_contain_text(re.compile(r"max (1[0-9]|20)\b"))  # 20 handled over one or two minutes
        expect(page.locator("#chart-crm-sync-iteratorAge polyline")).to_have_count(1)
        expect(page.locator("#chart-crm-sync-iteratorAge polyline")).to_have_attribute("data-points", re.compile("[1-9]"))
        shot(page, "incident")
        assert page.csp_errors == []  # everything works under the page's own CSP


def test_reprocess_asks_for_confirmation_with_the_count_then_runs(env):
    from playwright.sync_api import expect

    failures, parking = create_consumer_queues("search-indexer")
    capture_failures(failures, "search-indexer", 5)
    with serve({}) as (url, app), browser_page() as page:
        page.goto(url)
        expect(page.locator("#depth-search-indexer")).to_have_attribute("data-depth", "5")
        page.select_option("#mode-search-indexer", "replay")
        page.click("#reprocess-search-indexer")
        confirm = page.locator("#confirm-search-indexer")
        expect(confirm).to_be_visible()
        expect(page.locator("#confirm-text-search-indexer")).to_have_text(
            "reprocess 5 messages in userstream-dev-search-indexer-failures of search-indexer (replay mode)?")
        page.click("#confirm-no-search-indexer")  # said no: nothing runs
        expect(confirm).to_be_hidden()
        expect(page.locator("#job-search-indexer")).to_have_text("not started")
        from opsapi.services import get_services

        assert get_services(app).jobs.list()["jobs"] == [] and queue_depth(failures) == (5, 0)

        page.click("#reprocess-search-indexer")
        page.click("#confirm-yes-search-indexer")
        expect(page.locator("#job-status-search-indexer")).to_have_text("succeeded")
        expect(page.locator("#job-progress-search-indexer")).to_contain_text("5 of 5")
        expect(page.locator("#job-stopped-search-indexer")).to_contain_text("stopped because: max 5 messages taken")
        expect(page.locator("#job-caller-search-indexer")).to_contain_text("confirmed 5")
        expect(page.locator("#badge-search-indexer")).to_have_text("OK")
        expect(page.locator("#depth-search-indexer")).to_have_attribute("data-depth", "0")
        shot(page, "drained")
    assert queue_depth(failures) == (0, 0) and queue_depth(parking) == (0, 0)


def test_progress_has_an_eta_and_cancel_stops_a_running_job_and_says_who_stopped_it(env):
    from playwright.sync_api import expect

    gate = threading.Event()
    calls = [0]

    def slow(record):
        calls[0] += 1
        if calls[0] > 10:  # the first round (at most 10 messages) goes through: a rate to estimate from
            assert gate.wait(30)

    failures, _ = create_consumer_queues("slack-notifier")
    capture_failures(failures, "slack-notifier", 25)
    with serve({"DRAIN_OPTIONS": {"wait_time_s": 0, "handle_record": slow}}) as (url, _app), browser_page() as page:
        page.goto(url)
        page.click("#reprocess-slack-notifier")
        page.click("#confirm-yes-slack-notifier")
        expect(page.locator("#job-status-slack-notifier")).to_have_text("running")
        # N of total, and an estimate of what is left from the rate so far
        expect(page.locator("#job-progress-slack-notifier")).to_have_text(
            re.compile(r"^([1-9]|10) of 25, about \d+(\.\d)? (s|min|h|days) left$"))
        expect(page.locator("#job-progress-slack-notifier progress")).to_have_attribute("value", re.compile(r"^[1-9]"))
        page.click("#job-cancel-slack-notifier")
        expect(page.locator("#job-" + "slack-notifier")).to_contain_text("cancel asked by local user")
        gate.set()
        expect(page.locator("#job-status-slack-notifier")).to_have_text("cancelled")
        expect(page.locator("#job-stopped-slack-notifier")).to_contain_text("stopped because: cancelled by local user")
        expect(page.locator("#job-progress-slack-notifier")).not_to_contain_text("left")  # no ETA once stopped
        expect(page.locator("#job-cancel-slack-notifier")).to_have_count(0)
        expect(page.locator("#history tbody tr").first).to_contain_text("cancelled")
    visible, in_flight = queue_depth(failures)
    assert in_flight == 0 and 0 < visible < 25  # stopped between messages; what it did not take is visible


def test_job_history_is_there_after_a_reload_and_a_restart_of_the_api(env):
    from playwright.sync_api import expect

    boto3.client("s3").create_bucket(Bucket="jobs-bucket")
    failures, _ = create_consumer_queues("slack-notifier")
    capture_failures(failures, "slack-notifier", 3)
    config = {"JOBS_BUCKET": "jobs-bucket", "DRAIN_OPTIONS": {"wait_time_s": 0, "handle_record": lambda r: None}}
    with serve(config) as (url, _app), browser_page() as page:
        page.goto(url)
        page.click("#preview-slack-notifier")
        expect(page.locator("#job-status-slack-notifier")).to_have_text("succeeded")
        page.reload()
        row = page.locator("#history tbody tr").first
        expect(row).to_contain_text("reprocess (preview)")
        expect(row).to_contain_text("succeeded")
        expect(row).to_contain_text("3 of 3")
        expect(row).to_contain_text("queue empty")
    with serve(config) as (url, _app), browser_page() as page:  # a new API process: nothing in memory
        page.goto(url)
        row = page.locator("#history tbody tr").first
        expect(row).to_contain_text("reprocess (preview)")
        expect(row).to_contain_text("slack-notifier")
        expect(page.locator("#history-note")).to_have_text("kept in s3://jobs-bucket/jobs/")


def test_with_aws_unreachable_and_a_stale_state_the_page_says_so_in_words_with_the_age(env, monkeypatch, tmp_path):
    from datetime import UTC, datetime, timedelta

    from playwright.sync_api import expect

    written = datetime.now(UTC) - timedelta(days=3)
    (tmp_path / "esm.json").write_text(json.dumps({
        "updatedAt": written.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "mappings": [{"uuid": "u-1", "functionName": "userstream-dev-crm-sync", "state": "Enabled",
                      "status": "caught-up", "settings": {}, "iteratorAgeSeconds": 0.0, "counters": {}}]}))
    with socket.socket() as s:  # a port nothing listens on: every AWS call is refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    with serve({}) as (url, _app), browser_page() as page:
        page.goto(url)
        expect(page.locator("#badge-search-indexer")).to_have_text("unknown")
        expect(page.locator("#unknown-search-indexer")).to_contain_text("failure ledger not readable: ")
        expect(page.locator("#unknown-search-indexer")).to_contain_text("failure queue not readable: ")
        facts = page.locator("#facts-search-indexer")
        expect(facts).to_contain_text("error: ")
        expect(facts).to_contain_text(dead)  # which endpoint, in words
        expect(page.locator("#unknown-crm-sync")).to_contain_text("mapping state is 3.0 days old")
        expect(page.locator("#facts-crm-sync")).to_contain_text("state 3.0 days old")
        expect(page.locator("#lag-stale-crm-sync")).to_have_text(" as of 3.0 days ago (stale)")
        # an old state proves nothing about now: its alarms have no data, as CloudWatch would say
        expect(page.locator("#facts-crm-sync")).to_contain_text("iteratorAge INSUFFICIENT_DATA, errors INSUFFICIENT_DATA")
        for cell in page.locator("section.consumer td, section.consumer .badge").all_inner_texts():
            assert cell.strip() not in ("?", ""), cell
        shot(page, "unreachable")


def test_hostile_values_are_shown_as_text_bidi_controls_visible_and_long_values_cut(env):
    from playwright.sync_api import expect

    failures, _ = create_consumer_queues("search-indexer")
    evil = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    capture_failures(failures, "search-indexer", 1, error_type="KeyError", message=evil)
    capture_failures(failures, "search-indexer", 1, start=1, error_type="KeyError",
                     message="invoice \u202egpj.exe\u202c for admin")
    capture_failures(failures, "search-indexer", 1, start=2, error_type="KeyError", message="x" * 900)
    with serve({}) as (url, _app), browser_page() as page:
        page.goto(url)
        table = page.locator("#failures-search-indexer table")
        expect(table).to_contain_text(evil)  # as text
        expect(table.locator("img")).to_have_count(0)
        expect(table.locator("b")).to_have_count(0)
        assert page.evaluate("window.__pwned") is None
        expect(table).to_contain_text("invoice \u27e6U+202E\u27e7gpj.exe\u27e6U+202C\u27e7 for admin")
        assert "\u202e" not in table.inner_text()
        long_cell = page.locator("#failures-search-indexer td.msg .val", has_text="xxxx").first
        expect(long_cell).to_have_text("x" * 240 + "\u2026")
        expect(long_cell).to_have_attribute("title", "x" * 900)
        assert page.csp_errors == []


def test_half_an_hour_of_the_pages_own_refresh_on_a_simulated_clock_receives_nothing(env):
    """The page itself (its timers on Playwright's simulated clock, the API's caches on the same
    simulated time) refreshes for 30 minutes at its default 3 s: every failure-queue message's
    receive count is where it was, nothing reached parking, and no ReceiveMessage was made."""
    from opsapi.services import get_services

    queues = {n: create_consumer_queues(n, redrive_max=5) for n in ("search-indexer", "slack-notifier", "crm-sync")}
    for name, (failures, _) in queues.items():
        capture_failures(failures, name, 4)
    now = [0.0]
    config = {"CLOCK": lambda: now[0], "REFRESH_MS": 3000, "LEDGER_TTL_S": 10, "REPROCESS_FUNCTION_NAME": None}
    seen: dict[str, int] = {}
    in_flight = [0]

    def started(request):
        path = request.url.split("//", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        seen[path] = seen.get(path, 0) + 1
        in_flight[0] += 1

    def ended(_request):
        in_flight[0] -= 1

    with serve(config) as (url, app), browser_page() as page:
        receives: list[dict] = []
        get_services(app).clients.get("sqs").meta.events.register(
            "before-call.sqs.ReceiveMessage", lambda params, **kw: receives.append(params))
        page.clock.install()  # from now on the page's timers and Date run only when told
        page.on("request", started)
        page.on("requestfinished", ended)
        page.on("requestfailed", ended)
        page.goto(url)
        step_ms = 30_000  # ten refreshes per step, the API's clock moving with the page's
        for _ in range(30 * 60 * 1000 // step_ms):
            now[0] += step_ms / 1000
            page.clock.run_for(step_ms)
            for _wait in range(3000):  # until the step's requests are answered
                if in_flight[0] == 0:
                    break
                page.wait_for_timeout(10)
            assert in_flight[0] == 0, "the page's requests did not finish"
        assert page.locator("#status").inner_text() == ""  # no refresh failed
    assert receives == []
    assert seen.get("consumers", 0) >= 600  # 30 minutes at one refresh every 3 s
    for name in queues:
        assert seen.get(f"consumers/{name}/failures", 0) >= 600
        assert seen.get(f"consumers/{name}/charts", 0) >= 30  # once a (simulated) minute
    sqs = boto3.client("sqs")
    for failures, parking in queues.values():
        msgs = sqs.receive_message(QueueUrl=failures, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        assert sorted(m["Attributes"]["ApproximateReceiveCount"] for m in msgs) == ["1"] * 4  # this receive only
        assert queue_depth(parking) == (0, 0)


def test_backfill_and_rewind_confirm_run_and_cancel_from_the_page(env, monkeypatch):
    """The backfill and rewind rows: the confirmation with the table's count or the windows
    (a rewind's relative times as the API fixed them), progress to the total, the summary, a
    cancel that says who, the history."""
    from playwright.sync_api import expect

    import consumers.search_indexer as si
    from consumers.search_indexer import handle_record as index_it
    from tests.reprocess.jobsupport import index_matches_table, load_table, user_item
    from tests.support.aws import create_users_table

    create_users_table("users", stream=True)
    monkeypatch.setenv("USERS_TABLE", "users")
    boto3.client("s3").create_bucket(Bucket="jobs-bucket")
    create_consumer_queues("search-indexer")
    si._sinks.clear()
    load_table("users", [user_item(i) for i in range(40)])
    gate, hold = threading.Event(), [False]

    def handle(record):
        if hold[0]:
            assert gate.wait(60)
        index_it(record)

    config = {"JOBS_BUCKET": "jobs-bucket", "DRAIN_OPTIONS": {"wait_time_s": 0, "handle_record": handle}}
    with serve(config) as (url, _app), browser_page() as page:
        page.goto(url)
        page.fill("#bf-segments-search-indexer", "2")
        page.click("#backfill-search-indexer")
        expect(page.locator("#confirm-text-search-indexer")).to_contain_text(
            "backfill from the table 40 items in users (DynamoDB's ItemCount")
        expect(page.locator("#confirm-text-search-indexer")).to_contain_text("2 segment(s)) of search-indexer?")
        page.click("#confirm-yes-search-indexer")
        expect(page.locator("#job-status-search-indexer")).to_have_text("succeeded")
        expect(page.locator("#job-progress-search-indexer")).to_contain_text("40 of 40")
        expect(page.locator("#job-summary-search-indexer")).to_have_text(
            "taken 40, handled 40, captured to the failure queue 0; parts: 2 done")
        assert index_matches_table(os.environ["SEARCH_URL"], "users") == []

        page.fill("#rw-since-search-indexer", "10m")
        page.fill("#rw-window-search-indexer", "5m")
        page.select_option("#rw-mode-search-indexer", "replay")
        page.click("#rewind-search-indexer")
        expect(page.locator("#confirm-text-search-indexer")).to_have_text(re.compile(
            r"^rewind the stream 2 window\(s\) of 300 s from \S+Z to \S+Z \(1 shard lineage\(s\), replay mode\) "
            r"of search-indexer\?$"))
        page.click("#confirm-no-search-indexer")
        expect(page.locator("#job-search-indexer")).to_have_text("not started")
        page.click("#rewind-search-indexer")
        page.click("#confirm-yes-search-indexer")
        expect(page.locator("#job-status-search-indexer")).to_have_text("succeeded")
        expect(page.locator("#job-progress-search-indexer")).to_contain_text("2 of 2 windows")
        expect(page.locator("#job-summary-search-indexer")).to_contain_text("parts: 1 done")

        hold[0] = True  # the next backfill waits inside its first page until the test lets it go
        page.fill("#bf-segments-search-indexer", "1")
        page.fill("#bf-rate-search-indexer", "1")  # small pages: a cancel lands between two of them
        page.click("#backfill-search-indexer")
        page.click("#confirm-yes-search-indexer")
        expect(page.locator("#job-status-search-indexer")).to_have_text("running")
        page.click("#job-cancel-search-indexer")
        expect(page.locator("#job-search-indexer")).to_contain_text("cancel asked by local user")
        gate.set()
        expect(page.locator("#job-status-search-indexer")).to_have_text("cancelled")
        expect(page.locator("#job-stopped-search-indexer")).to_contain_text("stopped because: cancelled by local user")
        expect(page.locator("#job-cancel-search-indexer")).to_have_count(0)
        rows = page.locator("#history tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text("backfill from the table")
        expect(rows.nth(0)).to_contain_text("cancelled")
        expect(rows.nth(1)).to_contain_text("rewind the stream")
        expect(rows.nth(1)).to_contain_text("2 of 2 windows")
        assert page.csp_errors == []
    si._sinks.clear()
