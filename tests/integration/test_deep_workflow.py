"""Deep features through the real workflow: the ResNet is trained on the training
cases (rule fit_deep) and its checkpoint feeds the per-case extraction."""

import json

import pandas as pd
import pytest

from .conftest import make_workdir, micro_config, run_snakemake

pytestmark = pytest.mark.slow


def test_trained_resnet_checkpoint_feeds_extraction(tmp_path, micro_cohort):
    cfg = micro_config()
    cfg["deep"] = {
        "enabled": True,
        "endpoint": "recurrence",
        "weights": "train",
        "epochs": 1,
        "crop_size": 16,
    }
    wd = make_workdir(tmp_path / "deep", cfg, micro_cohort)
    sheet = pd.read_csv(wd / "data/cases.tsv", sep="\t", dtype=str)
    test_case = sheet.loc[sheet["split"] == "external", "case_id"].iloc[0]
    target = "results/features/deep/T2/C.parquet"  # the external center
    run_snakemake(wd, target)
    history = json.loads((wd / "results/models/deep/T2.json").read_text())
    train_ids = set(sheet.loc[sheet["split"] == "train", "case_id"])
    # trained on training cases only (the fit discipline), then used for an external case
    assert set(history["cases"]) <= train_ids and test_case not in history["cases"]
    feats = pd.read_parquet(wd / target)
    assert test_case in feats.index
    assert list(feats.index) == sorted(sheet.loc[sheet["center"] == "C", "case_id"])
    assert feats.shape[1] == 512 and feats.columns[0] == "T2__deep_resnet18_000"
    assert feats.notna().all().all()
    log = (wd / "logs/extract_deep/C_T2.log").read_text()
    assert "results/models/deep/T2.pt" in log
