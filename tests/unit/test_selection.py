"""Selection steps on data with known answers: informative features found, noise and
duplicates dropped, clinical columns passed through, deterministic, Pipeline-ready."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from radstudy.reproducibility import ICCFilter
from radstudy.selection import (
    CorrelationPruner,
    CoxLassoSelector,
    ForwardSelector,
    LassoSelector,
    MRMRSelector,
    UnivariateSelector,
    VarianceFilter,
    build_selector,
    selection_report,
)

INFORMATIVE = ["T2__f000", "T2__f001", "T2__f002"]


def _binary(n=200, p=53, seed=0):
    """3 informative + 50 noise features, a clinical column, a 0/1 outcome."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i:03d}" for i in range(p)])
    X.index = pd.Index([f"c{i:03d}" for i in range(n)], name="case_id")
    logit = 2.5 * X[INFORMATIVE].sum(axis=1)
    y = pd.Series((logit + rng.logistic(size=n) > 0).astype(int), index=X.index)
    X["clinical__age"] = rng.normal(60, 10, size=n)
    return X, y


def _survival(n=90, p=8, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i:03d}" for i in range(p)])
    X.index = pd.Index([f"c{i:03d}" for i in range(n)], name="case_id")
    lp = 1.2 * X["T2__f000"] - 1.0 * X["T2__f001"] + 0.9 * X["T2__f002"]
    T = rng.exponential(np.exp(-lp))
    C = rng.exponential(3.0, size=n)
    y = pd.DataFrame({"time": np.minimum(T, C), "event": (T <= C).astype(int)}, index=X.index)
    return X, y


def test_variance_filter_drops_constant_and_missing():
    X, y = _binary(n=40)
    X = X.assign(T2__const=3.0, T2__na=np.r_[np.nan, np.ones(39)])
    vf = VarianceFilter().fit(X, y)
    assert vf.reasons_["T2__const"] == "near-constant"
    assert vf.reasons_["T2__na"] == "missing values"
    assert "T2__const" not in vf.transform(X).columns and "clinical__age" in vf.transform(X)
    assert len(vf.selected_) == 53


@pytest.mark.parametrize("test", ["ttest", "mannwhitney"])
def test_univariate_keeps_informative(test):
    X, y = _binary()
    uni = UnivariateSelector(test=test, alpha=0.01, fdr=True).fit(X, y)
    assert set(INFORMATIVE) <= set(uni.selected_) and len(uni.selected_) <= 6
    assert "clinical__age" not in uni.selected_ and "clinical__age" in uni.transform(X)
    assert uni.scores_[INFORMATIVE].max() < 1e-4
    shuffled = X.sample(frac=1, random_state=2)  # y is aligned by case id, not position
    assert UnivariateSelector(test=test, alpha=0.01).fit(shuffled, y).selected_ == uni.selected_
    capped = UnivariateSelector(test=test, alpha=0.01, max_features=2).fit(X, y)
    assert len(capped.selected_) == 2 and set(capped.selected_) <= set(INFORMATIVE)


def test_fdr_is_benjamini_hochberg():
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    X, y = _binary(n=60)
    raw = UnivariateSelector(test="ttest", fdr=False).fit(X, y).scores_
    adj = UnivariateSelector(test="ttest", fdr=True).fit(X, y).scores_
    cols = [c for c in X.columns if c.startswith("T2__")]
    p = stats.ttest_ind(X.loc[y == 1, cols], X.loc[y == 0, cols], equal_var=False).pvalue
    np.testing.assert_allclose(raw[cols], p, rtol=1e-12)
    np.testing.assert_allclose(adj[cols], multipletests(p, method="fdr_bh")[1], rtol=1e-12)


def test_correlation_pruner_keeps_the_more_relevant_of_duplicates():
    X, y = _binary()
    X["T2__dup"] = X["T2__f000"] * 2 + 1  # perfectly correlated with f000
    X["T2__noisy_copy"] = X["T2__f001"] + np.random.default_rng(9).normal(0, 0.1, len(X))
    pr = CorrelationPruner(threshold=0.9).fit(X, y)
    # exact duplicate: same AUC, name decides (deterministic)
    assert "T2__dup" in pr.selected_ and "T2__f000" not in pr.selected_
    assert pr.reasons_["T2__f000"].endswith("with T2__dup")
    # of a correlated pair the one farther from AUC 0.5 stays
    pair = pr.scores_[["T2__f001", "T2__noisy_copy"]]
    assert pr.scores_["T2__f001"] == pytest.approx(abs(roc_auc_score(y, X["T2__f001"]) - 0.5))
    assert (set(pr.selected_) & set(pair.index)) == {pair.idxmax()}
    assert len(pr.selected_) == 53  # 55 candidates - 2 redundant
    assert "clinical__age" in pr.transform(X).columns
    no_y = CorrelationPruner(threshold=0.9).fit(X)  # relevance by variance: dup has 4x
    assert "T2__dup" in no_y.selected_


def test_lasso_finds_informative_and_stores_path():
    X, y = _binary()
    lasso = LassoSelector(cv=5, random_state=0, Cs=10).fit(X, y)
    assert set(INFORMATIVE) <= set(lasso.selected_)
    assert lasso.path_.shape == (10, 53) and list(lasso.cv_error_.columns) == ["C", "mean", "sd"]
    # weak penalty (large C) keeps more features than a strong one
    nz = (lasso.path_ != 0).sum(axis=1)
    assert nz.iloc[-1] > nz.iloc[0]
    assert lasso.cv_error_["mean"].idxmin() == int(np.flatnonzero(lasso.path_.index == lasso.C_)[0])
    top = LassoSelector(cv=5, random_state=0, Cs=[0.05, 0.1, 1.0], max_features=3).fit(X, y)
    assert sorted(top.selected_) == INFORMATIVE
    again = LassoSelector(cv=5, random_state=0, Cs=10).fit(X, y)
    pd.testing.assert_frame_equal(again.path_, lasso.path_)


def test_cox_lasso_selects_prognostic_features():
    X, y = _survival()
    sel = CoxLassoSelector(penalizers=(0.02, 0.1, 0.3), cv=3).fit(X, y)
    assert set(INFORMATIVE) <= set(sel.selected_)
    assert len(sel.selected_) <= 5
    assert sel.path_.shape == (3, 8)
    assert list(sel.path_.index) == [0.3, 0.1, 0.02]  # strong -> weak penalty
    assert sel.cv_error_["mean"].notna().all()
    assert sel.coef_["T2__f001"] < 0 < sel.coef_["T2__f000"]


def test_mrmr_and_forward_pick_informative():
    X, y = _binary()
    mr = MRMRSelector(k=3).fit(X, y)
    assert len(set(mr.selected_) & set(INFORMATIVE)) >= 2
    small = X[[f"T2__f{i:03d}" for i in range(10)]]
    fw = ForwardSelector(max_features=3, cv=3).fit(small, y)
    assert sorted(fw.selected_) == INFORMATIVE
    assert list(fw.path_["roc_auc"]) == sorted(fw.path_["roc_auc"])  # each step helps
    assert fw.path_["roc_auc"].iloc[-1] > 0.85
    stop = ForwardSelector(max_features=6, cv=3, tol=0.01).fit(small, y)
    assert 3 <= len(stop.selected_) < 6


def test_pipeline_from_config_spec_is_deterministic_and_pickles():
    X, y = _binary()
    X["T2__dup"] = X["T2__f000"] * 2 + 1
    spec = {
        "variance": {},
        "icc": {"keep": [c for c in X.columns if c != "T2__f040"]},
        "univariate": {"test": "ttest", "alpha": 0.05},
        "correlation": {"threshold": 0.9},
        "lasso": {"cv": 3, "Cs": 8},
        "mrmr": {"k": 3},
    }
    steps = build_selector(spec, random_state=7)
    assert [n for n, _ in steps] == list(spec)
    assert isinstance(steps[1][1], ICCFilter) and steps[4][1].random_state == 7
    pipe = Pipeline(steps).fit(X, y)
    out = pipe.transform(X)
    # clinical columns reach mRMR (earlier steps pass them), which may drop them
    assert "clinical__age" in pipe.named_steps["mrmr"].reasons_.index
    feats = [c for c in out.columns if c.startswith("T2__")]
    assert len(set(feats) & {"T2__f000", "T2__dup"}) <= 1
    assert len(set(feats) & set(INFORMATIVE + ["T2__dup"])) >= 2
    shuffled = X.sample(frac=1, random_state=1)
    again = Pipeline(build_selector(spec, random_state=7)).fit(shuffled, y.loc[shuffled.index])
    assert list(again.transform(X).columns) == list(out.columns)
    back = pickle.loads(pickle.dumps(pipe))
    pd.testing.assert_frame_equal(back.transform(X), out)
    rep = selection_report(pipe.steps)
    assert set(rep["step"]) == set(spec)
    assert not rep.loc[(rep["step"] == "icc") & (rep["feature"] == "T2__f040"), "kept"].any()
    assert clone(steps[4][1]).get_params()["Cs"] == 8
    with pytest.raises(ValueError, match="unknown selection step"):
        build_selector({"magic": {}})
    with pytest.raises(ValueError, match="selection step 'lasso'"):
        build_selector({"lasso": {"alpha": 1}})


def test_include_clinical_lets_a_selector_drop_clinical():
    X, y = _binary(n=80)
    X["clinical__const"] = 1.0
    assert "clinical__const" in VarianceFilter().fit(X).transform(X).columns
    vf = VarianceFilter(include_clinical=True).fit(X)
    assert "clinical__const" not in vf.transform(X).columns


def test_vectorised_auc_and_c_index_equal_sklearn_and_lifelines():
    """The one-pass per-feature AUC / C-index give the libraries' values (ties included)."""
    from lifelines.utils import concordance_index
    from sklearn.metrics import roc_auc_score

    from radstudy.selection import column_auc, column_concordance

    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(8, 40))
        F = np.round(rng.normal(size=(n, 6)), 1)  # rounded: tied values
        F[:, 0] = 1.0  # constant feature
        y = (rng.random(n) < 0.4).astype(int)
        y[:2] = [0, 1]
        ref = [roc_auc_score(y, F[:, k]) for k in range(6)]
        np.testing.assert_allclose(column_auc(F, y), ref, rtol=0, atol=1e-12)
        t = rng.exponential(10, n)
        t = np.round(t) if trial % 2 else t  # tied times, event and censored
        e = (rng.random(n) < 0.6).astype(int)
        e[0] = 1
        ref = [concordance_index(t, F[:, k], e) for k in range(6)]
        np.testing.assert_allclose(column_concordance(t, e, F), ref, rtol=0, atol=1e-12)
