"""The HTML report: one self-contained page, rendered by headless Chromium."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from knowgate.cli import app
from knowgate.tests.api_helpers import CHROMIUM_ARGS, chromium_path
from knowgate.tests.test_eval_runs import context, run, synthetic


async def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser_path = chromium_path()
    items, scripts = synthetic(24)
    for graph in ("triage", "oracle", "always-search"):
        await run(items, graph, tmp_path / graph, context(scripts), tmp_path)
    page_path = tmp_path / "report.html"
    done = CliRunner().invoke(app, ["eval", "report", *(str(tmp_path / g) for g in
                                                        ("triage", "oracle", "always-search")),
                                    "--out", str(page_path)])
    assert done.exit_code == 0, done.output
    page = page_path.read_text()
    # Self-contained: nothing is fetched (no scripts, stylesheets, images or external links).
    assert not any(tag in page for tag in ("<script", "<link", "<img", "src=", 'href="http'))

    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # Playwright gives every launch a fresh temporary profile.
        browser = await pw.chromium.launch(executable_path=browser_path, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page(viewport={"width": 1200, "height": 900})
            await tab.goto(page_path.as_uri())
            tables = await tab.locator("table").count()
            rows = await tab.locator("table").first.locator("tbody tr").count()
            plots = await tab.locator("svg").count()
            headers = await tab.locator("table").first.locator("th").all_inner_texts()
            shot = await tab.screenshot(full_page=True)
        finally:
            await browser.close()
    # The comparison, a decision matrix per run and a signal table per run.
    assert tables == 7 and rows == 3 and plots == 2
    # Each recorded signal's declaration is shown beside its AUROC.
    assert "<td>search_support</td>" in page
    assert "share of the query&#x27;s distinguishing words the top passage holds" in page
    assert "utility $/q" in headers and "wrong among answered" in headers
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000


def test_report_of_nothing_is_a_user_error(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["eval", "report", str(tmp_path / "none"), "--out",
                                    str(tmp_path / "r.html")])
    assert done.exit_code == 2 and "no run at" in done.output
