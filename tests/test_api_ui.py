"""The trace page in headless Chromium (Debian's, driven by Playwright's Python package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowgate.tests.api_helpers import (
    CHROMIUM_ARGS,
    Q,
    chromium_path,
    server_settings,
    serving,
    triage_context,
)


@pytest.fixture
def chromium() -> str:
    return chromium_path()


def test_send_a_message_and_see_the_trace(tmp_path: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with serving(server_settings(tmp_path), triage_context()) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1100, "height": 800})
        try:
            page = browser.new_page()
            page.goto(srv.url + "/ui")
            expect(page.locator("#model")).to_have_value("knowgate/triage")
            page.fill("#question", Q)
            page.click("#send")
            turn = page.get_by_test_id("turn").last
            expect(turn.get_by_test_id("answer")).to_have_text("Kedal", timeout=15_000)
            expect(turn.get_by_test_id("outcome")).to_have_text("answered")
            expect(turn.get_by_test_id("path")).to_contain_text("draft→search→draft→answer")
            steps = turn.get_by_test_id("steps")
            expect(steps.locator("tr")).to_have_count(5)  # header + four steps
            expect(steps).to_contain_text("read 1 passage(s) found by the search")
            expect(turn.get_by_test_id("signals")).to_contain_text("search_support")
            # Each declared signal says what it is (knowgate.signals).
            expect(turn.get_by_test_id("signals")).to_contain_text(
                "evidence · raw · searcher: share of the query's distinguishing words")
            expect(turn.get_by_test_id("citations")).to_have_text("citations: p1")

            page.fill("#question", "Who founded Nowhere Corp?")  # same thread: a second turn
            page.click("#send")
            second = page.get_by_test_id("turn").nth(1)
            expect(second.get_by_test_id("answer")).to_have_text("I don't know.",
                                                                  timeout=15_000)
            expect(second.get_by_test_id("outcome")).to_have_text("abstained")
            shot = tmp_path / "trace-page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_the_page_runs_under_its_policy_and_keeps_the_key_in_this_tab_only(
        tmp_path: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings = server_settings(tmp_path, api_keys=["sk-ui"])
    with serving(settings, triage_context()) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.goto(srv.url + "/ui")
            page.fill("#key", "sk-ui")
            page.dispatch_event("#key", "change")
            page.fill("#question", Q)
            page.click("#send")
            turn = page.get_by_test_id("turn").last
            expect(turn.get_by_test_id("answer")).to_have_text("Kedal", timeout=15_000)
            stored = page.evaluate("() => [localStorage.getItem('knowgate-key'), "
                                   "sessionStorage.getItem('knowgate-key')]")
        finally:
            browser.close()
    assert stored == [None, "sk-ui"]
    assert violations == []  # the inline script and style ran under the policy
