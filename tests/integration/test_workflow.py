"""The real DAG end to end on a tiny synthetic cohort: tables, models, honesty checks."""

import json

import pandas as pd
import pytest

from .conftest import case_file, make_workdir, run_snakemake, tiny_config

pytestmark = pytest.mark.slow


def _metrics(wd, endpoint, model):
    return pd.read_csv(wd / f"results/evaluation/{endpoint}/{model}/metrics.tsv", sep="\t")


def _value(m, cohort, metric):
    row = m[(m["cohort"] == cohort) & (m["metric"] == metric)]
    assert len(row) == 1, f"no {metric} for {cohort}: {m['cohort'].unique()}"
    return row.iloc[0]


def test_report_and_tables_exist(demo_run):
    wd = demo_run
    assert (wd / "results/report/report.html").stat().st_size > 10_000
    raw = pd.read_parquet(wd / "results/features/raw/A.parquet")
    assert raw.index.name == "case_id" and raw.index.is_monotonic_increasing
    assert {"center", "split"} <= set(raw.columns)
    assert any(c.startswith("T2__original_") for c in raw.columns)
    assert "clinical__afp" in raw.columns
    icc = pd.read_csv(wd / "results/selection/icc.tsv", sep="\t")
    assert {"inter", "intra"} <= set(icc["kind"])
    # segmentation agreement of the two readers + its overlay figure
    seg = wd / "results/segmentation/T2"
    pairs = pd.read_csv(seg / "dice_pairwise.tsv", sep="\t")
    assert len(pairs) == 1 and 0.5 < pairs["mean"].iloc[0] <= 1
    assert (seg / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    norm = json.loads(case_file(wd, "A001", "T2", "normalisation.json").read_text(encoding="utf-8"))
    assert norm["method"] == "zscore" and len(norm["roi_after"]) == len(norm["quantiles"])


def test_leave_one_center_out_and_survival_extras(demo_run):
    m = _metrics(demo_run, "recurrence", "radiomics_lr")
    assert {"loco", "loco:A", "loco:B"} <= set(m["cohort"])
    assert {"tp", "fp", "tn", "fn"} <= set(m["metric"])
    s = _metrics(demo_run, "efs", "radiomics_cox")
    assert 0 < _value(s, "train", "ibs")["value"] < 0.25
    card = json.loads(
        (demo_run / "results/models/efs/radiomics_cox/card.json").read_text(encoding="utf-8")
    )
    assert "model_score_per_sd" in card["multivariable_cox"]["covariate"]


def test_signal_is_found_on_held_out_data(demo_run):
    m = _metrics(demo_run, "recurrence", "radiomics_lr")
    cv = _value(m, "cv", "auc")
    assert cv["value"] > 0.7
    ext = _value(m, "external:C", "auc")
    assert ext["value"] > 0.6
    assert ext["ci_low"] <= ext["value"] <= ext["ci_high"]


def test_shuffled_labels_give_chance_auc(demo_run):
    m = _metrics(demo_run, "recurrence", "radiomics_lr")
    assert abs(_value(m, "cv_shuffled", "auc")["value"] - 0.5) < 0.2


def test_survival_model_and_training_cutoff(demo_run):
    wd = demo_run
    card = json.loads(
        (wd / "results/models/efs/radiomics_cox/card.json").read_text(encoding="utf-8")
    )
    preds = pd.concat(
        pd.read_csv(p, sep="\t", dtype={"case_id": str})
        for p in sorted((wd / "results/evaluation/efs/radiomics_cox/predictions").glob("*.tsv"))
    )
    train = preds[preds["split"] == "train"]
    # predictions are written with 6 significant digits
    assert card["cutoff"] == pytest.approx(train["score"].median(), rel=1e-5, abs=1e-9)
    m = _metrics(wd, "efs", "radiomics_cox")
    assert _value(m, "train", "c_index")["value"] > 0.6


def test_fit_rules_read_training_files_only(demo_run):
    """Fitting rules take the training centers' files only (external center C absent)."""
    out = run_snakemake(demo_run, "--dry-run", "--forceall", "--printshellcmds", "--quiet", "rules")
    assert out.returncode == 0
    wd = demo_run
    summary = json.loads((wd / "results/features/combat.json").read_text(encoding="utf-8"))
    assert set(summary["centers"]) == {"A", "B"}
    card = json.loads(
        (wd / "results/models/recurrence/radiomics_lr/card.json").read_text(encoding="utf-8")
    )
    assert card["training_centers"] == ["A", "B"]


def test_sheet_error_stops_before_any_job(tmp_path, tiny_cohort):
    wd = make_workdir(tmp_path / "bad", tiny_config(), tiny_cohort)
    sheet = pd.read_csv(wd / "data/cases.tsv", sep="\t", dtype=str)
    sheet.loc[2, "split"] = "training"
    sheet.to_csv(wd / "data/cases.tsv", sep="\t", index=False)
    proc = run_snakemake(wd, check=False)
    assert proc.returncode != 0
    assert "row 4" in proc.stderr and "column 'split'" in proc.stderr
    assert not (wd / "results/cases").exists()


def test_snakemake_report(demo_run, tmp_path):
    """The report is also exposed through `snakemake --report`."""
    out = tmp_path / "snakemake_report.html"
    run_snakemake(demo_run, "--report", str(out))
    text = out.read_text(encoding="utf-8")
    assert "report.html" in text and "metrics.tsv" in text
