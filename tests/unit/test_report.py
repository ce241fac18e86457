"""The HTML report (issue 17): number formats, tables that fit and download, Table 1
against tableone's own output, small-multiple figures (series per axis, legends off
the data, PNG + SVG), the summary block first, sections left out when empty."""

import base64
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from radstudy import config as rc
from radstudy import report_figures as rf
from radstudy.report_format import fmt_ci, fmt_p, format_column, sig, table_html
from radstudy.report_summary import headline_model, metric_rows, summary_block
from radstudy.report_table1 import flatten, prepare, table_one


# ---------------------------------------------------------------------- formats
def test_numbers_are_formatted_per_column():
    assert sig(6712.3) == "6710" and sig(0.71234) == "0.712" and sig(12.5) == "12.5"
    assert sig(0.000123456) == "0.000123" and sig(np.nan) == "" and sig(0) == "0"
    assert sig(0.8) == "0.800" and sig(99.96) == "100" and sig(0.99962) == "1.00"
    assert fmt_ci(0.7123, 0.6411, 0.7789) == "0.71 (0.64 to 0.78)"
    assert fmt_ci(0.7123, np.nan, np.nan) == "0.71"
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.0312) == "0.0312"
    # integers print as integers, not 12.000; AFP-sized values without exponents
    assert format_column(pd.Series([12.0, 3.0, np.nan], name="n")).tolist() == ["12", "3", ""]
    assert format_column(pd.Series([6712.3, 45.678], name="afp")).tolist() == ["6710", "45.7"]
    assert format_column(pd.Series([0.2, 0.00001], name="PH p")).tolist() == ["0.200", "<0.001"]


def test_tables_scroll_in_their_own_box_sort_fold_and_download_as_tsv():
    df = pd.DataFrame({"very_long_column_name": np.arange(30.0), "x": np.linspace(0, 1, 30)})
    out = table_html(df, name="my table")
    assert out.startswith("<details><summary>my table: 30 rows (show)</summary>")
    assert '<div class="tbl"><table' in out and 'class="dataframe sortable"' in out
    assert "very_<wbr>long_<wbr>column_<wbr>name" in out  # the header may wrap
    tsv = re.search(r'download="my_table.tsv" href="data:[^;]+;base64,([^"]+)"', out)
    text = base64.b64decode(tsv.group(1)).decode()
    assert text.splitlines()[:2] == ["very_long_column_name\tx", "0\t0"]
    ci = table_html(pd.DataFrame({"AUC": ["0.71 (0.64 to 0.78)"]}), name="ci", formatted=True)
    assert "0.71 (0.64&nbsp;to&nbsp;0.78)" in ci  # the interval stays on one line
    tsv = re.search(r'base64,([^"]+)"', ci).group(1)
    assert base64.b64decode(tsv).decode() == "AUC\n0.71 (0.64 to 0.78)\n"  # plain in the TSV
    short = table_html(df.head(3), name="short")
    assert not short.startswith("<details>") and "<td>1</td>" in short
    assert table_html(pd.DataFrame()) == '<p class="note">(none)</p>'


# ---------------------------------------------------------------------- Table 1
@pytest.fixture
def cases():
    rng = np.random.default_rng(0)
    n = 40
    d = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "center": np.repeat(["A", "B"], n // 2),
            "split": np.tile(["train", "train", "test", "external"], n // 4),
            "age": rng.normal(60, 10, n).round(1),
            "sex": rng.integers(0, 2, n).astype(float),
            "afp": np.exp(rng.normal(7, 1.5, n)).round(1),  # skewed
            "stage": rng.integers(1, 4, n),
            "label": rng.integers(0, 2, n),
        }
    )
    d.loc[3, "age"] = np.nan
    d.loc[5, "sex"] = np.nan
    return d


def test_prepare_labels_levels_and_finds_the_skewed_variables(cases):
    data, categorical, nonnormal = prepare(
        cases, ["age", "sex", "afp", "stage"], {"sex": {0: "female", 1: "male"}}
    )
    assert categorical == ["sex", "stage"] and nonnormal == ["afp"]
    assert set(data["sex"].dropna()) == {"female", "male"} and data["sex"].isna().sum() == 1
    assert set(data["stage"]) == {"1", "2", "3"}


def test_table_one_is_tableones_own_output(cases):
    from tableone import TableOne

    labels = {"sex": {"0": "female", "1": "male"}}  # string keys work as int keys do
    ours = table_one(cases, ["age", "sex", "afp", "stage"], "split", labels)
    data = cases[["age", "afp"]].copy()
    data["sex"] = cases["sex"].map({0.0: "female", 1.0: "male"})
    data["stage"] = cases["stage"].astype(str)
    data["split"] = cases["split"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TableOne(
            data,
            columns=["age", "sex", "afp", "stage"],
            categorical=["sex", "stage"],
            nonnormal=["afp"],
            groupby="split",
            pval=True,
            htest_name=True,
            missing=True,
            include_null=False,
            overall=True,
            decimals=1,
            pval_digits=3,
        )
    pd.testing.assert_frame_equal(ours.tableone, theirs.tableone)
    flat = flatten(ours)
    assert list(flat.columns) == [
        "variable", "level", "Missing", "Overall", "external", "test", "train", "P-Value", "Test",
    ]  # fmt: skip
    rows = flat.set_index(["variable", "level"])
    assert rows.loc[("age, mean (SD)", ""), "Missing"] == "1"
    assert rows.loc[("sex, n (%)", "female"), "Missing"] == "1"
    assert ("afp, median [Q1,Q3]", "") in rows.index
    assert ("", "male") in rows.index  # the variable named on its first level only
    assert rows.loc[("age, mean (SD)", ""), "P-Value"] != ""


def test_table_one_leaves_out_p_values_when_a_group_is_too_small(cases):
    small = cases.assign(split=["train"] * 39 + ["external"])
    t = table_one(small, ["age", "sex"], "split")
    assert "P-Value" not in flatten(t).columns


def test_table_one_copes_with_an_empty_column_and_a_single_level(cases):
    odd = cases.assign(empty=np.nan, const="a")
    flat = flatten(table_one(odd, ["age", "empty", "const"], "split"))
    assert flat.set_index("variable").loc["empty, mean (SD)", "Missing"] == str(len(cases))
    assert "const, n (%)" in set(flat["variable"])


def test_report_table_one_has_one_table_per_grouping(cases):
    from radstudy.report import table_one as report_table_one

    body = report_table_one(
        cases,
        ["age", "sex", "afp"],
        {"rec": {"type": "binary", "column": "label"}},
        {"sex": {0: "female", 1: "male"}},
    )
    assert body.count("<table") == 2
    assert "By split" in body and "By outcome rec (label)" in body
    assert "female" in body and "median [Q1,Q3]" in body and "0:7" not in body


# ---------------------------------------------------------------------- figures
def _curves(models, cohorts=("cv", "test", "external:D", "train", "cv_shuffled", "loco:A")):
    """model -> curves table (as evaluate_model writes it), every model a little apart."""
    x = np.linspace(0, 1, 5)
    out = {}
    for i, m in enumerate(models):
        rows = []
        for c in cohorts:
            for kind in ("roc", "calibration"):
                rows += [(kind, c, "model", a, min(1.0, a + 0.05 * i)) for a in x]
            for series in ("model", "treat_all", "treat_none"):
                rows += [("decision", c, series, a, 0.3 - a * 0.2) for a in x]
        out[m] = pd.DataFrame(rows, columns=["kind", "cohort", "series", "x", "y"])
    return out


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the report makes (not closed)."""
    figs = []

    def keep(fig, caption, alt=None, name=None):
        figs.append((fig, caption, alt))
        return f"<figure>{caption}</figure>"

    monkeypatch.setattr(rf, "fig_html", keep)
    return figs


@pytest.mark.parametrize("kind", ["roc", "calibration", "decision"])
def test_curve_panels_one_per_cohort_at_most_six_series_legend_off_the_axes(captured, kind):
    models = [f"m{i}" for i in range(8)]
    colors = rf.model_colors(models)
    rf.curve_panels(_curves(models), kind, colors, "rec")
    assert len(captured) == 2  # 8 models do not fit on one axis: two figures
    for fig, caption, alt in captured:
        axes = [ax for ax in fig.axes if ax.axison]
        titles = [ax.get_title() for ax in axes]
        # train (apparent), the shuffled null and one loco fold are not panels
        assert titles == ["internal CV", "held-out test", "external center D"]
        for ax in axes:
            assert len(ax.get_lines()) <= rf.MAX_SERIES
            assert ax.get_legend() is None
        assert len(fig.legends) == 1 and alt and caption
    # the same model has the same colour in every figure
    first = {ln.get_label(): ln.get_color() for ln in captured[0][0].axes[0].get_lines()}
    assert first["m0"] == colors["m0"]


def test_km_panels_put_the_number_at_risk_under_each_axis(captured):
    rng = np.random.default_rng(1)
    n = 60
    pred = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "center": np.repeat(["A", "B", "D"], n // 3),
            "split": np.repeat(["train", "test", "external"], n // 3),
            "time": rng.exponential(20, n),
            "event": rng.integers(0, 2, n),
            "risk_group": np.tile(["low", "high"], n // 2),
        }
    )
    rf.km_panels(pred, "cox", "efs")
    (fig, caption, _), = captured  # fmt: skip
    assert "number at risk" in caption
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "training (apparent)",
        "held-out test",
        "external center D",
    ]
    assert len(fig.axes) == 2 * len(panels)  # one at-risk table axis per panel
    assert all(ax.get_legend() is None for ax in panels) and len(fig.legends) == 1


def test_figures_are_written_as_png_and_svg_with_the_same_bytes_each_time(tmp_path):
    import matplotlib.pyplot as plt

    for run in ("a", "b"):
        with rf.figure_dir(tmp_path / run):
            fig, ax = plt.subplots()
            ax.plot([0, 1], [0, 1])
            out = rf.fig_html(fig, "A line", alt="a line", name="line")
        assert 'alt="a line"' in out and "<figcaption>A line</figcaption>" in out
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["01_line.png", "01_line.svg", "captions.tsv"]
    # the captions index: what snakemake --report labels each figure with
    assert (tmp_path / "a" / "captions.tsv").read_text(
        encoding="utf-8"
    ) == "file\tcaption\n01_line\tA line\n"
    for name in ("01_line.png", "01_line.svg", "captions.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_feature_charts_show_the_top_features_only(captured):
    weights = pd.Series(np.linspace(-1, 1, 50), index=[f"f{i}" for i in range(50)])
    rf.top_bars(weights, 10, "weight", "Feature weights", "w")
    (fig, caption, _), = captured  # fmt: skip
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 10 and {"f0", "f49"} <= set(labels)
    assert "top 10 of 50" in caption


# ---------------------------------------------------------------------- summary
def _metrics(auc_cv, null_pass=1.0, slope=1.0):
    rows = []
    for cohort, v in (("cv", auc_cv), ("test", 0.7), ("external:D", 0.65), ("external:E", 0.6)):
        rows.append((cohort, "auc", v, v - 0.1, v + 0.1, 30))
        rows.append((cohort, "calibration_slope", slope, np.nan, np.nan, 30))
    rows.append(("external", "auc", 0.62, 0.5, 0.74, 60))
    rows.append(("cv_shuffled", "auc", 0.5, 0.4, 0.6, 30))
    rows.append(("cv_shuffled", "null_check_pass", null_pass, np.nan, np.nan, 30))
    return pd.DataFrame(rows, columns=["cohort", "metric", "value", "ci_low", "ci_high", "n"])


def test_headline_model_is_the_best_internal_cv_and_external_centers_come_first():
    models = {"a": _metrics(0.7), "b": _metrics(0.8), "c": _metrics(0.75)}
    assert headline_model(models) == "b"
    order = metric_rows({"b": models["b"]})["cohort"].tolist()
    assert order == ["cv", "test", "external:D", "external:E", "external"]


def test_summary_block_names_the_finding_and_every_check_in_plain_words(captured):
    cfg = {
        "study": {"name": "s", "description": "A study."},
        "endpoints": {"rec": {"type": "binary", "column": "label"}},
    }
    cases = pd.DataFrame(
        {
            "case_id": list("abcd"),
            "center": list("AABD"),
            "split": ["train", "train", "test", "external"],
            "label": [1, 0, 1, 1],
        }  # fmt: skip
    )
    metrics = {("rec", "a"): _metrics(0.7, slope=0.5), ("rec", "b"): _metrics(0.8, null_pass=0)}
    combat = {"center_predictability": {"forest": {"before": 0.9, "after": 0.55}}}
    html = summary_block(cfg, cases, combat, metrics, {}, rf.model_colors(["a", "b"]))
    assert html.startswith("<section id='summary'>")
    assert "headline model" in html and ">b</span>" in html
    assert "0.80 (0.70&nbsp;to&nbsp;0.90)" in html  # the headline AUC with its CI, one line
    assert "external center D" in html and "external (pooled)" in html
    assert html.index("external center E") < html.index("external (pooled)")
    assert "<b>Check</b>: null check" in html and "rec / b" in html
    assert "<b>OK</b>: center predictability after harmonisation: AUC 0.55" in html
    assert "<b>OK</b>: calibration slope of rec / b" in html
    assert len(captured) == 1 and captured[0][2].startswith("Forest plot")


# ---------------------------------------------------------------------- whole report
def _study(tmp_path):
    """A feature-table study's outputs: no images, so no QC, segmentation or ICC."""
    rng = np.random.default_rng(0)
    n = 24
    ids = [f"c{i:02d}" for i in range(n)]
    split = np.tile(["train", "train", "test", "external"], n // 4)
    center = np.where(split == "external", "D", np.tile(["A", "B"], n // 2))
    cases = pd.DataFrame(
        {
            "case_id": ids,
            "center": center,
            "split": split,
            "age": rng.normal(50, 9, n),
            "sex": rng.integers(0, 2, n),
            "label": rng.integers(0, 2, n),
        }  # fmt: skip
    )
    cases.to_csv(tmp_path / "cases.tsv", sep="\t", index=False)
    pd.DataFrame(columns=["case_id", "center", "stage", "reason"]).to_csv(
        tmp_path / "excluded.tsv", sep="\t", index=False
    )
    pd.DataFrame(columns=["feature", "kind", "icc", "category"]).to_csv(
        tmp_path / "icc.tsv", sep="\t", index=False
    )
    (tmp_path / "combat.json").write_text(json.dumps({"center_auc_after": 0.52}))
    feats = pd.DataFrame(
        rng.normal(size=(n, 30)), index=ids, columns=[f"radiomics__f{i}" for i in range(30)]
    ).assign(center=center, split=split)
    feats.to_parquet(tmp_path / "raw.parquet")
    feats.to_parquet(tmp_path / "harm.parquet")
    inputs = {k: [] for k in ("cards", "metrics", "curves", "selections", "qc")}
    for model in ("lr", "svm"):
        d = tmp_path / model
        d.mkdir()
        card = {"endpoint": "rec", "model": model, "groups": ["radiomics"], "n_train": 12,
                "training_centers": ["A", "B"]}  # fmt: skip
        (d / "card.json").write_text(json.dumps(card))
        _metrics(0.7 if model == "lr" else 0.8).to_csv(d / "metrics.tsv", sep="\t", index=False)
        _curves([model])[model].to_parquet(d / "curves.parquet")
        pd.DataFrame(
            {"feature": [f"radiomics__f{i}" for i in range(30)], "weight": np.linspace(-1, 1, 30)}
        ).to_csv(d / "selection.tsv", sep="\t", index=False)
        for key, name in (("cards", "card.json"), ("metrics", "metrics.tsv"),
                          ("curves", "curves.parquet"), ("selections", "selection.tsv")):  # fmt: skip
            inputs[key].append(str(d / name))
    inputs.update(
        cases=str(tmp_path / "cases.tsv"),
        excluded=str(tmp_path / "excluded.tsv"),
        icc=str(tmp_path / "icc.tsv"),
        combat=str(tmp_path / "combat.json"),
        raw=[str(tmp_path / "raw.parquet")],
        harmonized=[str(tmp_path / "harm.parquet")],
    )
    cfg = rc.with_defaults(
        {
            "study": {"name": "table study", "description": "From a feature table."},
            "cohort": {"sheet": "cases.tsv", "clinical": ["age", "sex"], "features_table": "t"},
            "endpoints": {"rec": {"type": "binary", "column": "label"}},
            "models": {"rec": {"lr": {"groups": ["radiomics"]}}},
        }
    )
    return inputs, cfg


def test_report_opens_with_the_summary_and_leaves_out_empty_sections(tmp_path):
    from radstudy.report import render_report

    inputs, cfg = _study(tmp_path)
    out = tmp_path / "report" / "report.html"
    opts = {"clinical_labels": {"sex": {0: "female", 1: "male"}}, "top_features": 5}
    render_report(inputs, cfg, str(out), opts, str(tmp_path / "report" / "figures"))
    page = out.read_text(encoding="utf-8")
    body = page[page.index("<body>") :]
    assert re.match(r"<body><h1>table study</h1><section id='summary'>", body)
    sections = re.findall(r"<section id=[\"']([a-z0-9]+)[\"']", page)
    assert sections[0] == "summary"
    assert {"flow", "table1", "models", "features", "checklist"} <= set(sections)
    assert not {"qc", "segmentation", "icc"} & set(sections)  # nothing to show: left out
    assert 'href="#qc"' not in page
    assert "female" in page and "(none)" in page  # labelled levels; no exclusions
    imgs = re.findall(r"<figure><img alt=\"([^\"]*)\" src=[^>]+><figcaption>([^<]+)", page)
    assert len(imgs) == page.count("<img") and all(a and c for a, c in imgs)
    figs = sorted((tmp_path / "report" / "figures").glob("*.*g"))
    assert len(figs) == 2 * len(imgs)
    assert {p.suffix for p in figs} == {".png", ".svg"}
    index = pd.read_csv(tmp_path / "report" / "figures" / "captions.tsv", sep="\t")
    assert sorted(index["file"] + ".png") == sorted(p.name for p in figs if p.suffix == ".png")
    assert sorted(index["caption"]) == sorted(c for _, c in imgs)
    assert "top 5 of 30 by size" in page  # feature weights: the top features only
    assert "<script>" in page and "sortable" in page
    # one line per model, the endpoint's headline model (best internal CV) unfolded
    assert "<details class='model' id='rec--svm' open><summary><h3>rec / svm</h3>" in page
    assert "<details class='model' id='rec--lr'><summary><h3>rec / lr</h3>" in page
    assert "internal-CV AUC 0.80 (0.70 to 0.90) (headline model)" in page
    # the reporting checklists come last; every link in the report lands on a section
    assert sections[-1] == "checklists" and "TRIPOD+AI checklist" in page
    ids = set(re.findall(r"id=[\"']([^\"']+)[\"']", page))
    assert set(re.findall(r'href="#([^"]+)"', page)) <= ids


# ---------------------------------------------------------------------- checklists
def test_checklists_list_every_official_item_once():
    from radstudy import report_checklists as rcl

    tripod, clear = rcl.load("tripod_ai"), rcl.load("clear")
    numbers = [re.match(r"\d+", i["id"]).group() for i in tripod["items"]]
    assert sorted(set(map(int, numbers))) == list(range(1, 28))  # TRIPOD+AI: 27 items
    assert [i["id"] for i in clear["items"]] == [str(n) for n in range(1, 59)]  # CLEAR: 58
    for checklist in (tripod, clear):
        ids = [i["id"] for i in checklist["items"]]
        assert len(ids) == len(set(ids)) and all(
            i["section"] and i["topic"] for i in checklist["items"]
        )
    assert {i["id"] for i in tripod["items"] if re.match(r"12", i["id"])} == {
        "12a", "12b", "12c", "12d", "12e", "12f", "12g",
    }  # fmt: skip


def _image_facts(models=None):
    from radstudy import report_checklists as rcl

    cfg = rc.with_defaults(
        {
            "cohort": {"sheet": "cases.tsv", "sequences": ["T2"], "readers": ["R1", "R2"],
                       "reference_reader": "R1", "clinical": ["age"], "require": ["age"]},
            "endpoints": {"rec": {"type": "binary", "column": "label"}},
            "models": {"rec": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}},
        }
    )  # fmt: skip
    cases = pd.DataFrame(
        {
            "case_id": list("abcdef"),
            "center": list("AABBCC"),
            "age": [1, 2, 3, 4, 5, 6],
            "split": ["train", "train", "train", "test", "external", "external"],
            "label": [1, 0, 1, 0, 1, 1],
        }  # fmt: skip
    )
    excluded = pd.DataFrame(
        {"case_id": ["z"], "center": ["A"], "stage": ["sheet"], "reason": ["no age"]}
    )
    cards = [
        {
            "endpoint": "rec",
            "model": m,
            "spec": s,
            "steps": ["impute", "scale", "model"],
            "libraries": {"pyradiomics": "3.1.0", "scikit-learn": "1.5"},
        }  # fmt: skip
        for m, s in (models or {"lr": cfg["models"]["rec"]["lr"]}).items()
    ]
    params = {"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
              "featureClass": {"firstorder": None, "glcm": None}, "setting": {"binWidth": 25}}  # fmt: skip
    return rcl.facts(cfg, cases, excluded, cards, {"radiomics": 100, "clinical": 1}, params)


def test_checklists_fill_what_the_run_knows_and_link_to_it():
    from radstudy import report_checklists as rcl

    known = _image_facts(
        {
            "lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}, "smote": True},
            "clin": {"groups": ["clinical"], "classifier": {"name": "logistic"}},
        }
    )
    used = {i["fill"] for n in rcl.NAMES for i in rcl.load(n)["items"] if "fill" in i}
    assert used <= set(known), f"fills nobody computes: {used - set(known)}"
    assert "4 included" not in known["eligibility"][0]
    assert known["eligibility"][0].startswith("inclusion: age present; 6 included, 1 excluded")
    assert known["sample_size"][0].startswith(
        "6 cases (3 train, 1 test, 2 external); rec: 2 events in train, 0 events in test, "
        "2 events in external"
    )
    assert known["validation"][0].endswith(
        "on training rows, held-out test rows, external centers C, leave-one-center-out"
    )
    assert "median imputation" in known["missing"][0]
    assert known["class_imbalance"][0] == "SMOTE inside each fit: lr"
    assert known["non_radiomic"][0] == "clinical-only model(s): clin"
    assert "pyradiomics 3.1.0" in known["feature_extraction"][0]
    assert "scikit-learn 1.5" in known["model"][0]
    assert known["discretization"][0] == "fixed binWidth 25"
    assert known["image_types"][0] == "Original, LoG"
    assert known["feature_classes"][0] == "firstorder, glcm"
    assert known["n_features"][0] == "101 (clinical: 1, radiomics: 100)"
    # laid out: every item, known ones with their value and a link to a section shown
    page = rcl.checklists_section(known, {"flow", "table1", "models", "summary"})
    for n in rcl.NAMES:
        for item in rcl.load(n)["items"]:
            assert f"<td>{item['id']}</td>" in page and html_escape(item["topic"]) in page
    assert page.count("<tr class='filled'>") > 40
    tripod = page[: page.index("CLEAR checklist")]
    row = re.search(r"<td>6b</td>.*?</tr>", tripod).group()
    assert "inclusion: age present" in row and '<a href="#flow">' in row
    row = re.search(r"<td>17</td>.*?</tr>", tripod).group()
    assert rcl.OPEN in row and "<a " not in row  # ethics: the authors'
    assert '<a href="#qc">' not in page  # no QC section shown: no link to it


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


# ---------------------------------------------------------------------- snakemake --report
FIGURE_KINDS = [
    "forest_rec", "n4_bias", "normalisation_t2", "overlay_t2", "icc", "pca_combat",
    "roc_rec_1", "calibration_rec_1", "decision_rec_1", "confusion_rec_lr", "km_efs_cox_1",
    "search", "search_importances", "weights_rec_lr", "lasso_rec_lr", "nomogram_efs_cox",
    "selected_correlation", "selected_cases",
]  # fmt: skip


@pytest.mark.parametrize("name", FIGURE_KINDS)
def test_every_report_figure_has_a_snakemake_report_caption(name):
    """rules/report/figure.rst (the caption of results/report/figures/ in snakemake
    --report) says what each kind of figure shows."""
    from pathlib import Path
    from types import SimpleNamespace

    from docutils.core import publish_parts
    from jinja2 import Environment

    rst = Path(__file__).parents[2] / "rules/report/figure.rst"
    wildcards = SimpleNamespace(n="07", name=name)
    text = (
        Environment()
        .from_string(rst.read_text(encoding="utf-8"))
        .render(snakemake=SimpleNamespace(wildcards=wildcards))
    )
    body = publish_parts(text, writer="html", settings_overrides={"report_level": 2})
    assert body["body"].count("<p>") == 2  # the common line and the figure's own


def test_figure_labels_come_from_the_captions_index(tmp_path):
    from radstudy.report_format import figure_label

    assert figure_label(tmp_path, "01_x") == {"figure": "01_x", "caption": ""}
    (tmp_path / "captions.tsv").write_text("file\tcaption\n01_x\tA {b}: c\tc\n")
    assert figure_label(tmp_path, "01_x") == {"figure": "01_x", "caption": "A (b): c\tc"}
