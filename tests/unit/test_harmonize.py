"""ComBat against R sva::ComBat, and mapping an unseen center onto the frozen reference."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radstudy.harmonize import ComBat, center_predictability

REF = Path(__file__).resolve().parents[1] / "data" / "combat_reference"


def _input() -> pd.DataFrame:
    dat = pd.read_csv(REF / "inputData" / "testdata.csv").to_numpy().T  # scans x features
    X = pd.DataFrame(dat, columns=[f"f{i:03d}" for i in range(dat.shape[1])])
    X.index = pd.Index([f"s{i:02d}" for i in range(1, 11)], name="case_id")
    X.insert(0, "center", ["1"] * 5 + ["2"] * 5)
    X.insert(1, "pheno", [1.0 if i % 2 == 0 else 0.0 for i in range(10)])  # scans 1,3,5,7,9
    return X


def _sva(name: str) -> np.ndarray:
    path = REF / "sva_outputs" / f"testdata_sva_{name}.csv"
    return pd.read_csv(path).to_numpy().T  # scans x features


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("parametric_unadjusted", {}),
        ("parametric_adjusted", {"covariate_cols": ("pheno",)}),
        ("nonparametric_unadjusted", {"parametric": False}),
        ("nonparametric_adjusted", {"parametric": False, "covariate_cols": ("pheno",)}),
        ("parametric_unadjusted_meanonly", {"mean_only": True}),
        ("parametric_adjusted_meanonly", {"mean_only": True, "covariate_cols": ("pheno",)}),
        ("parametric_unadjusted_batchref", {"ref_batch": "1"}),
        ("parametric_adjusted_batchref", {"ref_batch": "1", "covariate_cols": ("pheno",)}),
        (
            "nonparametric_adjusted_batchref",
            {"ref_batch": "1", "parametric": False, "covariate_cols": ("pheno",)},
        ),
    ],
)
def test_matches_r_sva(name, kwargs):
    X = _input()
    if "covariate_cols" not in kwargs:
        X = X.drop(columns="pheno")
    out = ComBat(**kwargs).fit(X).transform(X)
    got = out[[c for c in out.columns if c.startswith("f")]].to_numpy()
    np.testing.assert_allclose(got, _sva(name), atol=1e-6, rtol=0)


def _multi_center(seed=0, n=30, p=40):
    rng = np.random.default_rng(seed)
    frames = []
    for b, (shift, scale) in {"A": (0.0, 1.0), "B": (2.0, 1.8), "C": (-1.0, 0.6)}.items():
        base = rng.normal(size=(n, p))
        frames.append(
            pd.DataFrame(base * scale + shift, columns=[f"T2__f{i}" for i in range(p)]).assign(
                center=b, clinical__age=rng.normal(size=n)
            )
        )
    X = pd.concat(frames, ignore_index=True)
    X.index = pd.Index([f"c{i:03d}" for i in range(len(X))], name="case_id")
    return X


def test_unseen_center_is_mapped_without_changing_the_fit():
    X = _multi_center()
    train = X[X["center"] != "C"]
    cb = ComBat().fit(train)
    before = pickle.dumps(cb.gamma_star_), pickle.dumps(cb.delta_star_)
    h_train = cb.transform(train)
    h_new = cb.transform(X[X["center"] == "C"])
    assert (pickle.dumps(cb.gamma_star_), pickle.dumps(cb.delta_star_)) == before
    # the training rows' output does not depend on the new center being present
    pd.testing.assert_frame_equal(cb.transform(X).loc[train.index], h_train)
    feats = [c for c in X.columns if c.startswith("T2__")]
    ref = h_train[feats].to_numpy()
    new = h_new[feats].to_numpy()
    assert abs(new.mean() - ref.mean()) < 0.15  # location moved onto the reference
    assert new.std() / ref.std() == pytest.approx(1.0, abs=0.15)  # scale too
    # clinical columns pass through untouched; batch column dropped
    assert "center" not in h_new.columns
    pd.testing.assert_series_equal(h_new["clinical__age"], X.loc[h_new.index, "clinical__age"])


def test_center_predictability_drops_after_combat():
    X = _multi_center(seed=1)
    feats = [c for c in X.columns if c.startswith("T2__")]
    h = ComBat().fit(X).transform(X)
    before = center_predictability(X[feats], X["center"])
    after = center_predictability(h[feats], X["center"])
    assert before > 0.95
    assert after < 0.7
