"""Cohort-stage functions over files: an unseen center is mapped, or left out with a reason."""

import json
import logging

import joblib
import numpy as np
import pandas as pd
import pytest

from radstudy import stages
from radstudy.config import with_defaults

CFG = with_defaults(
    {
        "seed": 3,
        "harmonization": {"enabled": True, "min_new_batch": 2},
        "selection": {"variance": {}},
        "endpoints": {"recurrence": {"type": "binary", "column": "label"}},
        "models": {
            "recurrence": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}
        },
    }
)


def _table(center: str, n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"{center}{i:02d}" for i in range(n)]
    y = np.arange(n) % 2
    X = pd.DataFrame(
        {
            "center": center,
            "split": "external" if center == "Z" else "train",
            "T2__a": rng.normal(size=n) + y + shift,
            "T2__b": rng.normal(size=n) * 2 + shift,
        },
        index=pd.Index(ids, name="case_id"),
    )
    sheet = pd.DataFrame({"case_id": ids, "center": center, "split": X["split"], "label": y})
    return X, sheet


@pytest.fixture
def fitted(tmp_path):
    tables, sheets = [], []
    for c, shift, seed in (("A", 0.0, 1), ("B", 3.0, 2)):
        X, sheet = _table(c, 12, shift, seed)
        X.to_parquet(tmp_path / f"{c}.parquet")
        sheet.to_csv(tmp_path / f"{c}.tsv", sep="\t", index=False)
        tables.append(str(tmp_path / f"{c}.parquet"))
        sheets.append(str(tmp_path / f"{c}.tsv"))
    (tmp_path / "robust.txt").write_text("ALL\n")
    stages.fit_model(
        tables,
        sheets,
        str(tmp_path / "robust.txt"),
        "recurrence",
        "lr",
        CFG,
        str(tmp_path / "model.joblib"),
        str(tmp_path / "card.json"),
        str(tmp_path / "selection.tsv"),
    )
    stages.fit_combat(
        tables, CFG["harmonization"], str(tmp_path / "combat.joblib"), str(tmp_path / "c.json")
    )
    return tmp_path


@pytest.mark.parametrize("n_new", [1, 4])
def test_unseen_center_mapped_or_left_out(fitted, n_new, caplog):
    X, sheet = _table("Z", n_new, 10.0, 5)
    X.to_parquet(fitted / "Z.parquet")
    sheet.to_csv(fitted / "Z.tsv", sep="\t", index=False)
    with caplog.at_level(logging.WARNING):
        stages.predict_center(
            str(fitted / "model.joblib"),
            str(fitted / "card.json"),
            str(fitted / "Z.parquet"),
            str(fitted / "Z.tsv"),
            "recurrence",
            CFG,
            str(fitted / "pred.tsv"),
        )
        stages.harmonize_center(
            str(fitted / "combat.joblib"), str(fitted / "Z.parquet"), str(fitted / "H.parquet")
        )
    pred = pd.read_csv(fitted / "pred.tsv", sep="\t")
    H = pd.read_parquet(fitted / "H.parquet")
    assert list(pred.columns) == ["case_id", "center", "split", "y_true", "y_prob"]
    if n_new == 1:  # too few rows to estimate the center's location/scale
        assert pred.empty and H.empty
        assert "center Z" in caplog.text and "at least 2" in caplog.text
    else:
        assert len(pred) == n_new and pred["y_prob"].between(0, 1).all()
        assert len(H) == n_new and list(H.columns[:2]) == ["center", "split"]
        # the +10 shift of the unseen center is removed by its own location estimate
        assert abs(H["T2__b"].mean() - 1.5) < 2.0
    card = json.loads((fitted / "card.json").read_text())
    assert card["training_centers"] == ["A", "B"]
    assert joblib.load(fitted / "combat.joblib")["combat"].batches_ == ["A", "B"]


def _survival_files(tmp_path):
    rng = np.random.default_rng(8)
    tables, sheets = [], []
    for c, shift in (("A", 0.0), ("B", 2.0), ("Z", -1.0)):
        n = 30
        ids = [f"{c}{i:02d}" for i in range(n)]
        risk = rng.normal(size=n)
        X = pd.DataFrame(
            {
                "center": c,
                "split": "external" if c == "Z" else "train",
                "T2__a": risk + shift,
                "T2__b": rng.normal(size=n) + shift,
                "clinical__age": rng.normal(50, 10, n),
            },
            index=pd.Index(ids, name="case_id"),
        )
        t = rng.exponential(np.exp(-risk) * 20)
        cens = rng.exponential(40, n)
        sheet = pd.DataFrame(
            {
                "case_id": ids,
                "center": c,
                "split": X["split"],
                "efs_time": np.minimum(t, cens),
                "efs_event": (t <= cens).astype(int),
            }
        )
        X.to_parquet(tmp_path / f"{c}.parquet")
        sheet.to_csv(tmp_path / f"{c}.tsv", sep="\t", index=False)
        tables.append(str(tmp_path / f"{c}.parquet"))
        sheets.append(str(tmp_path / f"{c}.tsv"))
    return tables, sheets


def test_survival_chain_reports_brier_ibs_and_leave_one_center_out(tmp_path):
    cfg = {
        "seed": 1,
        "harmonization": {"enabled": True},
        "selection": {"variance": {}},
        "endpoints": {"efs": {"type": "survival", "time": "efs_time", "event": "efs_event"}},
        "models": {"efs": {"cox": {"groups": ["radiomics"], "cox": {"penalizer": 0.1}}}},
        "evaluation": {"cv": {"n_splits": 3, "n_repeats": 1}, "bootstrap": 100, "loco": True},
    }
    cfg = with_defaults(cfg)
    tables, sheets = _survival_files(tmp_path)
    (tmp_path / "robust.txt").write_text("ALL\n")
    train_t, train_s = tables[:2], sheets[:2]
    args = (train_t, train_s, str(tmp_path / "robust.txt"), "efs", "cox", cfg)
    stages.fit_model(*args, *(str(tmp_path / f) for f in ("m.joblib", "card.json", "sel.tsv")))
    stages.cross_validate_model(*args, str(tmp_path / "cv.tsv"))
    preds = []
    for t, s, c in zip(tables, sheets, "ABZ", strict=True):
        out = str(tmp_path / f"pred_{c}.tsv")
        stages.predict_center(
            str(tmp_path / "m.joblib"), str(tmp_path / "card.json"), t, s, "efs", cfg, out
        )
        preds.append(out)
    stages.evaluate_model(
        str(tmp_path / "cv.tsv"),
        str(tmp_path / "card.json"),
        preds,
        "efs",
        cfg,
        str(tmp_path / "metrics.tsv"),
        str(tmp_path / "curves.parquet"),
    )
    card = json.loads((tmp_path / "card.json").read_text())
    mv = pd.DataFrame(card["multivariable_cox"]).set_index("covariate")
    assert card["multivariable_cox_n"] == 60 and mv.loc["model_score_per_sd", "hr"] > 1.2
    assert set(pd.DataFrame(card["ph_test"])["covariate"]) == set(mv.index)
    cv = pd.read_csv(tmp_path / "cv.tsv", sep="\t")
    assert {"cv", "loco", "loco:A", "loco:B"} <= set(cv["cohort"])
    # harmonisation is on: leave-one-center-out also runs without it
    assert {"loco_unharmonized", "loco_unharmonized:A", "loco_unharmonized:B"} <= set(cv["cohort"])
    s_cols = [c for c in cv.columns if c.startswith("S_")]
    assert len(s_cols) == 25 and cv[s_cols].notna().all().all()
    assert (cv[s_cols].diff(axis=1).iloc[:, 1:] <= 1e-12).all().all()  # S(t) non-increasing
    m = pd.read_csv(tmp_path / "metrics.tsv", sep="\t")
    ibs = m[m["metric"] == "ibs"].set_index("cohort")
    assert {"train", "test", "cv", "external:Z", "loco"} - {"test"} <= set(ibs.index)
    # better than the 0.25 of a coin (unharmonised: center B's shift of 2 is not removed)
    assert ibs.loc[~ibs.index.str.startswith("loco_unharmonized"), "value"].between(0, 0.25).all()
    assert (m["metric"].str.startswith("brier_t")).any()
    assert m.loc[(m["cohort"] == "loco") & (m["metric"] == "c_index"), "value"].item() > 0.55
