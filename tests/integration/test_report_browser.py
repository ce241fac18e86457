"""The report in a real headless browser (Debian chromium) at 1280x800: loads without
errors, every figure renders with alt text and a caption, the summary comes first and
nothing is wider than the window (wide tables scroll inside their own box)."""

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
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
        first = page.evaluate("document.body.children[1].id")  # after the title
        captions = page.evaluate(
            "Array.from(document.images).map(i => i.closest('figure')"
            " && i.closest('figure').querySelector('figcaption').textContent.trim())"
        )
        layout = page.evaluate(
            """() => {
              const vw = document.documentElement.clientWidth;
              const wide = Array.from(document.querySelectorAll('body *')).filter(e => {
                const r = e.getBoundingClientRect();
                return r.width > 0 && r.right > vw + 1 && !e.closest('.tbl');
              }).map(e => e.tagName + ' ' + (e.closest('section') || {}).id);
              const boxes = Array.from(document.querySelectorAll('.tbl'))
                .filter(b => b.getBoundingClientRect().right > vw + 1).length;
              return {vw, scroll: document.documentElement.scrollWidth, wide, boxes};
            }"""
        )
        # a header click sorts the table by that column, numbers as numbers
        page.click("#flow table.sortable thead th:last-child")
        sorted_col = page.evaluate(
            "Array.from(document.querySelectorAll('#flow table.sortable tbody tr'))"
            ".map(r => parseFloat(r.lastElementChild.textContent))"
        )
        browser.close()
    assert errors == []
    assert len(images) >= 8
    assert [alt for alt, ok, w in images if not ok or w == 0] == []
    for sec in ("flow", "table1", "qc", "segmentation", "icc", "combat", "models", "checklist"):
        assert sec in sections
    assert first == "summary" and sections[0] == "summary"
    assert all(alt for alt, _, _ in images) and all(captions)
    assert layout["scroll"] == layout["vw"] == 1280
    assert layout["wide"] == [] and layout["boxes"] == 0
    assert len(sorted_col) > 2 and sorted_col == sorted(sorted_col)
    # every inlined figure is also written as PNG, and as SVG but the segmentation
    # overlays (bitmaps written by another rule)
    figures = demo_run / "results/report/figures"
    pngs = {p.stem for p in figures.glob("*.png")}
    svgs = {p.stem for p in figures.glob("*.svg")}
    assert len(pngs) == len(images) and svgs <= pngs
    assert all("overlay" in p for p in pngs - svgs)


def test_table_one_of_the_demo_cohort_is_tableones_own(demo_run):
    """Table 1 by split on the demo cohort: the report's table equals TableOne built
    here from the same cohort table with the config's labels, and its cells are in
    the page."""
    import html as html_lib
    import warnings

    import pandas as pd
    import yaml
    from tableone import TableOne

    from radstudy.report_table1 import flatten, table_one

    cfg = yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))
    cases = pd.read_csv(demo_run / "results/cohort/cases.tsv", sep="\t", dtype={"case_id": str})
    clinical = list(cfg["cohort"]["clinical"])
    labels = cfg["report"]["clinical_labels"]
    ours = table_one(cases, clinical, "split", labels)
    # tableone directly: labelled columns as categories, |skewness| > 1 as nonnormal
    data = pd.DataFrame(index=cases.index)
    categorical, nonnormal = [], []
    for col in clinical:
        if col in labels:
            names = {f"{float(k):.0f}": v for k, v in labels[col].items()}
            data[col] = cases[col].map(lambda v, n=names: None if pd.isna(v) else n[f"{v:.0f}"])
            categorical.append(col)
        else:
            data[col] = pd.to_numeric(cases[col])
            if abs(data[col].dropna().skew()) > 1:
                nonnormal.append(col)
    data["split"] = cases["split"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TableOne(
            data, columns=clinical, categorical=categorical, nonnormal=nonnormal,
            groupby="split", pval=True, htest_name=True, missing=True,
            include_null=False, overall=True, decimals=1, pval_digits=3,
        )  # fmt: skip
    pd.testing.assert_frame_equal(ours.tableone, theirs.tableone)
    assert set(categorical) == {"sex", "pretext"} and "afp" in nonnormal
    page = (demo_run / "results/report/report.html").read_text(encoding="utf-8")
    table1 = page[page.index('id="table1"') :]
    for cell in flatten(ours)["Overall"]:
        assert html_lib.escape(cell) in table1, cell
