"""End to end in Debian's chromium (Playwright from PyPI, never a downloaded browser):
load the page, see a consumer with failures, press Reprocess, watch the queue drain."""
from __future__ import annotations

import os
import threading

import pytest

from tests.support.aws import create_consumer_queues, queue_depth

from .conftest import put_failures

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def served(env):
    """The app on a free loopback port (werkzeug, threaded), against moto."""
    from werkzeug.serving import make_server

    from opsapi import create_app

    app = create_app({"SAMPLE_TTL_S": 1, "REFRESH_MS": 700, "DRAIN_OPTIONS": {"wait_time_s": 0}})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join(10)


@pytest.mark.browser
def test_page_shows_failures_and_reprocess_drains_the_queue(served):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # as long as the page's own waits: a loaded machine answers slowly

    url, app = served
    failures, parking = create_consumer_queues("search-indexer")
    put_failures(failures, "search-indexer", 5)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(url)
            depth_cell = page.locator("#depth-search-indexer")
            expect(depth_cell).to_have_text("5")
            expect(page.locator("#row-search-indexer")).to_contain_text("KeyError")
            expect(page.locator("#sample-search-indexer")).to_contain_text("'fullname'")
            shot = os.environ.get("OPSAPI_SCREENSHOT")  # a path: look at the page yourself
            if shot:
                page.screenshot(path=shot, full_page=True)

            page.click("#preview-search-indexer")  # dry run: counts by error type, changes nothing
            expect(page.locator("#job-search-indexer")).to_contain_text("preview")
            expect(page.locator("#job-search-indexer")).to_contain_text('{"KeyError":5}')
            expect(depth_cell).to_have_text("5")

            page.select_option("#mode-search-indexer", "replay")
            page.click("#reprocess-search-indexer")
            expect(page.locator("#job-search-indexer")).to_contain_text("succeeded")
            expect(depth_cell).to_have_text("0")
            expect(page.locator("#job-search-indexer")).to_contain_text("taken 5, succeeded 5")
            if shot:
                page.screenshot(path=shot.removesuffix(".png") + "-drained.png", full_page=True)
        finally:
            browser.close()
    assert queue_depth(failures) == (0, 0) and queue_depth(parking) == (0, 0)
