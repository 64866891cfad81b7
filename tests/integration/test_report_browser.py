"""The HTML report in a real browser: Debian's headless Chromium, driven by Python playwright (no browser
download: `playwright install` is never run). The page is opened from a file:// URL, as a user opening an
e-mailed report would; it must load with no console errors, no failed requests, no request leaving the file,
and every chart image decoded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lokal.bench.report.document import bench_document
from lokal.report.html import write_html
from report_fixtures import bench_result

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _chromium() -> str:
    path = CHROMIUM if CHROMIUM.exists() else None
    found = str(path) if path else shutil.which("chromium")
    if not found:
        reason = "Debian's chromium is not installed (/usr/bin/chromium): apt-get install chromium"
        if os.environ.get("LOKAL_REQUIRE_BROWSER"):  # set by .ci/run, which installs it: missing is a failure there
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.mark.parametrize(
    ("results", "charts"),
    [
        pytest.param(lambda: [bench_result()], 10, id="one-result"),
        # two results: one SLO search chart each
        pytest.param(
            lambda: [bench_result(), bench_result("ollama smollm2", slowdown=1.5, kind="ollama")], 11, id="compare"
        ),
    ],
)
def test_html_report_loads_cleanly_in_chromium(tmp_path: Path, results, charts: int) -> None:
    executable = _chromium()
    from playwright import sync_api

    page_path = write_html(bench_document(results()), tmp_path / "report.html")
    url = page_path.resolve().as_uri()

    console_errors: list[str] = []
    failed: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:80]}: {r.failure}"))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url))
            response = page.goto(url, wait_until="load")
            assert response is None or response.ok
            images = page.eval_on_selector_all(
                "img",
                "els => els.map(e => ({complete: e.complete, w: e.naturalWidth, h: e.naturalHeight, alt: e.alt,"
                " data: e.currentSrc.startsWith('data:image/png;base64,')}))",
            )
            title = page.title()
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        finally:
            browser.close()

    assert console_errors == []
    assert failed == []
    assert outside == []  # nothing but the file itself and its data: URIs
    assert len(images) == charts
    for img in images:
        assert img["complete"] and img["data"] and img["alt"]
        assert (img["w"], img["h"]) == (800, 450)  # decoded: naturalWidth > 0
    assert title.startswith("lokal bench: ")
    assert headings[:2] == ["Summary", "Latency"] and "Metric definitions" in headings
