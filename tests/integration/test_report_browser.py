"""The report in a real headless browser (Debian chromium): loads without errors and
every figure renders."""

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_report_renders_in_chromium(demo_run):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    html = demo_run / "results/report/report.html"
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
        browser.close()
    assert errors == []
    assert len(images) >= 8
    assert [alt for alt, ok, w in images if not ok or w == 0] == []
    for sec in ("flow", "table1", "qc", "segmentation", "icc", "combat", "models", "checklist"):
        assert sec in sections
