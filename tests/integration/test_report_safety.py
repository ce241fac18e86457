"""Report safety: every string that comes from the user's data (study title and
description, clinical column names and level labels, the outcome column, feature
names of a feature table, inclusion rules, exclusion reasons) is shown as text, never
run as markup, and the report loads nothing from the network.

A feature-table study (cohort stages only, so a short run) whose strings are HTML
that would run script if it were pasted in unescaped; checked on the page source and
in a real headless browser (Debian chromium, driven by playwright): no dialog opens,
no request leaves file:/data:, and the strings read as text. Case ids and center names
cannot carry markup: the sheet schema refuses them before any job (the bad-input
matrix, tests/badinput: ``id-html``, ``center-html``).
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import make_workdir, run_snakemake, tiny_config

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def script(field: str) -> str:
    return f"<script>alert('{field}')</script>"


def img(field: str) -> str:
    return f"<img src=x onerror=alert('{field}')>"


TITLE = "Study " + script("title")
DESCRIPTION = "Cohort " + img("description")
AGE = "age" + script("clinical")  # a clinical column (also a model feature)
OUTCOME = "relapse" + img("outcome")  # the binary endpoint's column
LABELS = {0: "female" + script("level0"), 1: "male" + img("level1")}
FEATURES = ["T2__original_firstorder_" + script("feature"), "T2__glcm_" + img("feature2")]
PAYLOADS = [TITLE, DESCRIPTION, AGE, OUTCOME, *LABELS.values(), *FEATURES]


def hostile_table(n_per_center: int = 14, seed: int = 3) -> pd.DataFrame:
    """Sheet and feature table in one: centers A, B (train + test) and C (external),
    an outcome the first features predict, two clinical columns, ten features."""
    rng = np.random.default_rng(seed)
    rows = []
    for center in ("A", "B", "C"):
        for i in range(n_per_center):
            split = "external" if center == "C" else ("test" if i % 5 == 4 else "train")
            rows.append({"case_id": f"{center}{i + 1:03d}", "center": center, "split": split})
    df = pd.DataFrame(rows)
    n = len(df)
    signal = rng.normal(size=n)
    feats = {name: signal + rng.normal(scale=0.6, size=n) for name in FEATURES}
    for i in range(8):
        feats[f"T2__original_glszm_F{i}"] = rng.normal(size=n)
    shift = df["center"].map({"A": 0.0, "B": 0.8, "C": -0.5}).to_numpy()
    for name in feats:
        df[name] = feats[name] + shift
    df[OUTCOME] = (signal + rng.normal(scale=0.5, size=n) > 0).astype(int)
    df[AGE] = rng.integers(20, 80, size=n).astype(float)
    df.loc[1, AGE] = np.nan  # excluded by cohort.require: the reason names the column
    df["sex"] = rng.integers(0, 2, size=n)
    return df


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("hostile")
    (wd / "data").mkdir()
    hostile_table().to_csv(wd / "data/cases.tsv", sep="\t", index=False)
    cfg = tiny_config(
        **{
            "study": {"name": TITLE, "description": DESCRIPTION},
            "synthetic.enabled": False,
            "cohort.sequences": [],
            "cohort.readers": [],
            "cohort.repeats": {},
            "cohort.organ_mask_column": "",
            "cohort.descriptors": [],
            "cohort.features_table": "data/cases.tsv",
            "cohort.clinical": [AGE, "sex"],
            "cohort.require": [AGE],
            "cohort.inclusion": [f"`{AGE}` >= 18"],
            "endpoints": {"recurrence": {"type": "binary", "column": OUTCOME}},
            "models": {
                "recurrence": {
                    "clinical_radiomics_lr": {
                        "groups": ["radiomics", "clinical"],
                        "classifier": {"name": "logistic", "params": {"C": 1.0}},
                    }
                }
            },
            "evaluation.cv": {"n_splits": 3, "n_repeats": 1},
            "evaluation.bootstrap": 100,
            "evaluation.shuffled_null": False,
            "evaluation.loco": False,
            "report.clinical_labels": {"sex": LABELS},
        }
    )
    make_workdir(wd, cfg)
    run_snakemake(wd)
    return wd / "results/report/report.html"


class Page(HTMLParser):
    """The report's elements (tag, attributes) and its text, as a browser parses it."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.styles: list[str] = []  # <style> elements and style attributes
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self.styles.append(dict(attrs).get("style") or "")

    def handle_data(self, data):
        self.text.append(data)
        if self.lasttag == "style":
            self.styles.append(data)


def test_user_strings_are_text_in_the_page_source(hostile_report):
    page = Page(hostile_report.read_text(encoding="utf-8"))
    # no element or attribute came from the data: one script (the report's own), no
    # event handler, every image inlined
    assert [t for t, _ in page.elements].count("script") == 1
    assert [(t, a) for t, a in page.elements if any(k.startswith("on") for k in a)] == []
    assert [a.get("src") for t, a in page.elements if t == "img" and "src=x" in str(a)] == []
    assert all(a["src"].startswith("data:image/") for t, a in page.elements if t == "img")
    # every string is there, as text (headers may break after an underscore)
    text = "".join(page.text)
    for value in PAYLOADS:
        assert value in text, value


def test_report_loads_nothing_from_the_network(hostile_report):
    source = hostile_report.read_text(encoding="utf-8")
    page = Page(source)
    links = [
        (tag, key, value)
        for tag, attrs in page.elements
        for key, value in attrs.items()
        if key in ("src", "href", "action", "poster", "data", "srcset", "formaction")
    ]
    assert links and all(v.startswith(("#", "data:")) for _, _, v in links), [
        link for link in links if not link[2].startswith(("#", "data:"))
    ]
    assert not {"link", "iframe", "object", "embed", "base", "frame"} & {
        t for t, _ in page.elements
    }
    assert "".join(page.styles).count("{") > 20  # the report's own CSS, inline
    assert not re.search(r"url\(\s*['\"]?(?!data:|#)|@import", "".join(page.styles))


def test_report_in_chromium_runs_no_user_string_and_shows_it_as_text(hostile_report):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    dialogs, requests, errors = [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(hostile_report.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # an onerror handler would have fired by now
        title = page.evaluate("document.querySelector('h1').textContent")
        text = page.evaluate("document.body.textContent")
        scripts = page.evaluate("document.scripts.length")
        handlers = page.evaluate(
            "Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes)"
            ".some(a => a.name.startsWith('on'))).map(e => e.outerHTML.slice(0, 80))"
        )
        browser.close()
    assert dialogs == [] and errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert scripts == 1 and handlers == []
    assert title == TITLE
    for value in (DESCRIPTION, AGE, *LABELS.values(), *FEATURES):
        assert value in text, value
