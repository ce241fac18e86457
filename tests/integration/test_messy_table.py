"""A messy multi-center feature table (radstudy.synth.feature_table: xlsx, integer
ids, yes/no labels, an id number and a published score among the columns, gaps, a
tied feature, a feature constant within one center, a covariate constant within one
center, centers with different prevalence, a published fold column) through the
whole workflow: every behaviour of the feature-table entry point in one real run."""

import json

import pandas as pd
import pytest

from radstudy.synth import feature_table

from .conftest import make_workdir, run_snakemake

pytestmark = pytest.mark.slow

CONFIG = {
    "study": {"name": "messy_table"},
    "cohort": {
        "sheet": "data/table.xlsx",
        "features_table": "data/table.xlsx",
        "id_column": "PatientID",
        "center_column": "site",
        "split_column": "cohort",
        "feature_columns": ["f*"],
        "clinical": ["sex"],
    },
    "endpoints": {"outcome": {"type": "binary", "column": "outcome", "positive": "yes"}},
    "harmonization": {"covariates": ["sex"], "groups": {"radiomics": "combat_covariates"}},
    "evaluation": {"cv": {"fold_column": "fold"}, "bootstrap": 200},
    "models": {"outcome": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}},
}


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("messy"), CONFIG)
    (wd / "data").mkdir()
    table = feature_table()
    table.to_excel(wd / "data/table.xlsx", index=False)
    proc = run_snakemake(wd)
    return wd, table, proc


def test_the_table_runs_whole(messy_run):
    wd, table, _ = messy_run
    assert (wd / "results/report/report.html").is_file()
    cases = pd.read_csv(wd / "results/cohort/cases.tsv", sep="\t", dtype={"case_id": str})
    # integer ids in natural order; yes -> 1
    train = table[table["cohort"] == "train"]
    assert list(cases["case_id"]) == sorted(table["PatientID"], key=int)
    assert int(cases["outcome"].sum()) == int((table["outcome"] == "yes").sum())
    assert len(cases[cases["split"] == "train"]) == len(train)


def test_undeclared_columns_are_not_features(messy_run):
    wd, _, _ = messy_run
    roles = pd.read_csv(wd / "results/features/columns/A.tsv", sep="\t").set_index("column")
    assert roles.loc[["record_no", "nomogram_score"], "role"].tolist() == ["left out"] * 2
    raw = pd.read_parquet(wd / "results/features/raw/A.parquet")
    assert not [c for c in raw.columns if "record" in c or "nomogram" in c]
    log = (wd / "logs/import_center/A.log").read_text(encoding="utf-8")
    assert "left out: cohort" not in log and "nomogram_score" in log


def test_gaps_are_imputed_and_named(messy_run):
    wd, _, _ = messy_run
    card = json.loads((wd / "results/models/outcome/lr/card.json").read_text(encoding="utf-8"))
    assert "table__f007" in card["imputation"]["dropped"]  # half missing
    assert card["imputation"]["imputed_values"]["radiomics"] > 0
    html = (wd / "results/report/report.html").read_text(encoding="utf-8")
    assert "Features and missing values" in html and "values imputed" in html


def test_harmonisation_is_honest(messy_run):
    wd, _, _ = messy_run
    summary = json.loads((wd / "results/features/combat.json").read_text(encoding="utf-8"))
    skipped = summary["not_harmonized"]["features"]
    assert "table__f005" in skipped and "table__f006" in skipped  # tied / constant in A
    assert set(summary["center_predictability"]) == {"linear", "forest"}
    assert summary["prevalence"]["outcome"]["differs"]  # 20 % vs 60 %
    assert "prevalence differs" in (wd / "logs/fit_combat.log").read_text(encoding="utf-8")


def test_fixed_folds_loco_and_both_aucs(messy_run):
    wd, table, _ = messy_run
    cv = pd.read_csv(wd / "results/evaluation/outcome/lr/cv.tsv", sep="\t", dtype=str)
    runs = cv[cv["cohort"] == "cv"]
    assert set(runs["repeat"]) == {"0"} and runs["fold"].nunique() == 4
    fold_of = table.set_index("PatientID")["fold"].astype(str)
    for _, d in runs.groupby("fold"):
        assert fold_of[d["case_id"]].nunique() == 1  # each CV fold is one published fold
    assert {"loco", "loco_unharmonized"} <= set(cv["cohort"])
    m = pd.read_csv(wd / "results/evaluation/outcome/lr/metrics.tsv", sep="\t")
    have = set(zip(m["cohort"], m["metric"], strict=True))
    for row in [
        ("cv", "auc"),
        ("cv", "auc_pooled"),
        ("cv", "auc_fold_mean"),
        ("loco", "auc_center_mean"),
        ("cv_shuffled", "null_check_pass"),
        ("external:C", "auc"),
    ]:
        assert row in have, row
