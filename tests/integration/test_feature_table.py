"""Feature-table entry point: a study that starts from a published feature CSV runs
only the cohort stages (harmonisation, selection, models, evaluation, report)."""

import pandas as pd
import pytest

from .conftest import make_workdir, run_snakemake, tiny_config

pytestmark = pytest.mark.slow


def test_feature_csv_runs_the_cohort_stages_only(tmp_path, demo_run):
    # a "published" table: case_id, center, outcome and clinical columns + features,
    # here the radiomics features the image run of the same cohort produced
    raw = pd.concat(pd.read_parquet(p) for p in sorted(demo_run.glob("results/features/raw/*")))
    sheet = pd.read_csv(demo_run / "data/cases.tsv", sep="\t", dtype={"case_id": str})
    feats = raw[[c for c in raw.columns if c.startswith("T2__")]]
    keep = ["case_id", "center", "split", "age", "sex", "afp", "pretext", "label"]
    keep += ["efs_time", "efs_event", "desc_border", "desc_heterogeneity", "desc_septations"]
    table = sheet[keep].merge(feats.reset_index(), on="case_id", how="left")
    table = table[table["case_id"] != sheet["case_id"].iloc[-1]]  # one case lacks features
    wd = tmp_path / "table"
    (wd / "data").mkdir(parents=True)
    table.to_csv(wd / "data/features.csv", index=False)
    # the sheet is the same CSV's sheet columns, as TSV, with every case
    sheet[keep].to_csv(wd / "data/cases.tsv", sep="\t", index=False)
    cfg = tiny_config(
        **{
            "synthetic.enabled": False,
            "cohort.sequences": [],
            "cohort.readers": [],
            "cohort.repeats": {},
            "cohort.organ_mask_column": "",
            "cohort.features_table": "data/features.csv",
            # the entry point is under test, not the evaluation: one CV repeat
            "evaluation.cv": {"n_splits": 5, "n_repeats": 1},
            "evaluation.shuffled_null": False,
        }
    )
    make_workdir(wd, cfg)
    proc = run_snakemake(wd)
    out = proc.stdout + proc.stderr
    assert "prepare_image" not in out and "extract_radiomics" not in out
    assert "import_center" in out and "fit_model" in out
    assert (wd / "results/report/report.html").is_file()
    assert not (wd / "results/cases").exists()
    # the same features as the image run (plus the clinical columns), one case excluded
    imported = pd.concat(pd.read_parquet(p) for p in sorted(wd.glob("results/features/raw/*")))
    lost = sheet["case_id"].iloc[-1]
    assert lost not in imported.index and len(imported) == len(raw) - 1
    cols = [c for c in raw.columns if c.startswith("T2__")]
    pd.testing.assert_frame_equal(imported[cols], raw.drop(index=lost)[cols])
    excluded = pd.read_csv(wd / "results/cohort/excluded.tsv", sep="\t", dtype=str)
    assert excluded.set_index("case_id").loc[lost, "reason"].startswith("no row in the feature")
    m = pd.read_csv(wd / "results/evaluation/recurrence/radiomics_lr/metrics.tsv", sep="\t")
    cv = m[(m["cohort"] == "cv") & (m["metric"] == "auc")]["value"].item()
    assert cv > 0.65  # the signal survives the entry point


def test_feature_table_needs_no_images_config(tmp_path):
    cfg = tiny_config(**{"cohort.features_table": "data/features.csv"})
    wd = make_workdir(tmp_path / "bad", cfg)
    proc = run_snakemake(wd, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "set cohort.sequences and cohort.readers to []" in proc.stderr + proc.stdout
