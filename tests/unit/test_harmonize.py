"""ComBat against R sva::ComBat, and mapping an unseen center onto the frozen reference."""

import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from radstudy.errors import CaseError
from radstudy.harmonize import ComBat, center_predictability, pca_by_center

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


SCENARIOS = [
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
]


@pytest.mark.parametrize("name, kwargs", SCENARIOS)
def test_matches_r_sva(name, kwargs):
    X = _input()
    if "covariate_cols" not in kwargs:
        X = X.drop(columns="pheno")
    out = ComBat(**kwargs).fit(X).transform(X)
    assert list(out.columns) == [c for c in X.columns if c.startswith("f")]
    np.testing.assert_allclose(out.to_numpy(), _sva(name), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"covariate_cols": ("pheno",)},
        {"parametric": False, "covariate_cols": ("pheno",)},
        {"mean_only": True},
        {"eb": False, "covariate_cols": ("pheno",)},
    ],
)
def test_training_batch_relabelled_as_new_gets_its_fitted_mapping(kwargs):
    """The unseen-batch estimator is the one ComBat applies to each training batch."""
    X = _input()
    cb = ComBat(**kwargs).fit(X)
    expected = cb.transform(X).loc[X["center"] == "2"]
    relabelled = X[X["center"] == "2"].assign(center="new")
    got = cb.transform(relabelled)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6, rtol=0)
    g, d = cb.batch_params(relabelled)["new"]
    np.testing.assert_allclose(g, cb.gamma_star_["2"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(d, cb.delta_star_["2"], rtol=1e-5, atol=1e-8)


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


def _params(cb):
    return pickle.dumps((cb.grand_mean_, cb.var_pooled_, cb.gamma_star_, cb.delta_star_))


@pytest.mark.parametrize("parametric", [True, False])
def test_unseen_center_is_mapped_without_changing_the_fit(parametric):
    X = _multi_center()
    train = X[X["center"] != "C"]
    cb = ComBat(parametric=parametric).fit(train)
    before = _params(cb)
    h_train = cb.transform(train)
    h_new = cb.transform(X[X["center"] == "C"])
    assert _params(cb) == before
    # the training rows' output does not depend on the new center being present
    pd.testing.assert_frame_equal(cb.transform(X).loc[train.index], h_train)
    feats = [c for c in X.columns if c.startswith("T2__")]
    ref, new = h_train[feats].to_numpy(), h_new[feats].to_numpy()
    raw_new = X.loc[X["center"] == "C", feats].to_numpy()
    assert abs(raw_new.mean() - ref.mean()) > 1.5  # C starts far from the reference
    assert abs(new.mean() - ref.mean()) < 0.15  # location moved onto the reference
    assert new.std() / ref.std() == pytest.approx(1.0, abs=0.15)  # scale too
    # clinical columns pass through untouched; batch column dropped; order kept
    assert list(h_new.columns) == [c for c in X.columns if c != "center"]
    pd.testing.assert_series_equal(h_new["clinical__age"], X.loc[h_new.index, "clinical__age"])


def test_fit_does_not_depend_on_row_order():
    X = _multi_center(seed=2)
    a = ComBat().fit(X)
    b = ComBat().fit(X.sample(frac=1.0, random_state=3))
    assert _params(a) == _params(b)
    pd.testing.assert_frame_equal(a.transform(X), b.transform(X))


def test_pickle_round_trip_and_clone(tmp_path):
    X = _multi_center(seed=3)
    train = X[X["center"] != "C"]
    cb = ComBat(covariate_cols=("clinical__age",)).fit(train)
    joblib.dump(cb, tmp_path / "combat.joblib")
    back = joblib.load(tmp_path / "combat.joblib")
    pd.testing.assert_frame_equal(back.transform(X), cb.transform(X))
    assert "clinical__age" in back.transform(X).columns  # clinical covariate passes through
    assert clone(cb).get_params() == cb.get_params()
    doc = json.loads(cb.to_json(full=True))
    assert doc["batches"] == ["A", "B"] and len(doc["gamma_star"]["B"]) == 40
    assert doc["settings"]["covariate_cols"] == ["clinical__age"]


def test_feature_prefixes_and_constant_features_pass_through():
    X = _multi_center(seed=4)
    X["T1__x"] = X["T2__f0"] * 3.0
    X["T2__const_in_A"] = np.where(X["center"] == "A", 1.0, np.arange(len(X), dtype=float))
    cb = ComBat(feature_prefixes=("T2__",)).fit(X)
    assert "T1__x" not in cb.features_ and "T2__f0" in cb.features_
    assert cb.skipped_features_ == {"T2__const_in_A": "constant within a center"}
    H = cb.transform(X)
    pd.testing.assert_series_equal(H["T1__x"], X["T1__x"])
    pd.testing.assert_series_equal(H["T2__const_in_A"], X["T2__const_in_A"])
    assert not np.allclose(H["T2__f0"], X["T2__f0"])


def test_missing_cells_stay_missing():
    X = _multi_center(seed=5)
    X.iloc[3, 0] = np.nan
    H = ComBat().fit(X).transform(X)
    feats = [c for c in X.columns if c.startswith("T2__")]
    assert np.isnan(H.iloc[3, 0]) and np.isfinite(H[feats].to_numpy()).sum() == H[feats].size - 1


def test_too_few_rows_raise_case_errors():
    X = _multi_center(seed=6)
    cb = ComBat().fit(X[X["center"] != "C"])
    one = X[X["center"] == "C"].iloc[:1]
    with pytest.raises(CaseError, match=r"case c060: center C: .*1 row"):
        cb.transform(one)


def test_single_row_training_center_switches_to_mean_only_like_sva():
    X = _multi_center(seed=6)
    lone = pd.concat([X[X["center"] != "C"], X[X["center"] == "C"].iloc[:1]])
    cb = ComBat().fit(lone)
    assert cb.mean_only_ and not cb.mean_only
    assert all(np.all(d == 1) for d in cb.delta_star_.values())
    H = cb.transform(lone)
    feats = [c for c in X.columns if c.startswith("T2__")]
    assert np.isfinite(H[feats].to_numpy()).all()
    # the mean-only fit equals an explicit mean-only fit
    pd.testing.assert_frame_equal(H, ComBat(mean_only=True).fit(lone).transform(lone))


def test_center_predictability_drops_after_combat():
    X = _multi_center(seed=1)
    feats = [c for c in X.columns if c.startswith("T2__")]
    h = ComBat().fit(X).transform(X)
    before = center_predictability(X[feats], X["center"])
    after = center_predictability(h[feats], X["center"])
    assert before > 0.95
    assert after < 0.7
    pcs = pca_by_center(h[feats], X["center"])
    assert list(pcs.columns) == ["PC1", "PC2", "center"] and len(pcs) == len(X)
    raw_pcs = pca_by_center(X[feats], X["center"])
    # before ComBat the centers separate along PC1; after, their PC1 means are close
    assert np.ptp(raw_pcs.groupby("center")["PC1"].mean()) > 5
    assert np.ptp(pcs.groupby("center")["PC1"].mean()) < 1


def test_single_training_center_is_the_reference_and_new_centers_map_onto_it():
    rng = np.random.default_rng(4)
    n, p = 40, 6
    ref = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i}" for i in range(p)])
    ref.insert(0, "center", "A")
    new = pd.DataFrame(rng.normal(size=(n, p)) * 3.0 + 5.0, columns=ref.columns[1:])
    new.insert(0, "center", "N")
    cb = ComBat().fit(ref)
    assert not cb.identity_
    out_ref = cb.transform(ref)
    np.testing.assert_allclose(out_ref.to_numpy(), ref.drop(columns="center").to_numpy())
    out_new = cb.transform(new)
    # the unseen center's gain 3 and offset 5 are removed (EB-shrunk estimates)
    assert np.abs(out_new.mean().to_numpy() - ref.iloc[:, 1:].mean().to_numpy()).max() < 0.35
    assert np.all(np.abs(out_new.std().to_numpy() / ref.iloc[:, 1:].std().to_numpy() - 1) < 0.35)
