"""Cohort-stage functions over files: an unseen center is mapped, or left out with a reason."""

import json
import logging

import joblib
import numpy as np
import pandas as pd
import pytest

from radstudy import stages

CFG = {
    "seed": 3,
    "harmonization": {"enabled": True, "min_new_batch": 2},
    "selection": {"variance": {}},
    "endpoints": {"recurrence": {"type": "binary", "column": "label"}},
    "models": {"recurrence": {"lr": {"groups": ["radiomics"]}}},
}


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
    assert joblib.load(fitted / "combat.joblib").batches_ == ["A", "B"]
