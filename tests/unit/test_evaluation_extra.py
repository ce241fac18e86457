"""IPCW Brier score, confusion-matrix rows and leave-one-center-out predictions
against hand-computed answers."""

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from radstudy import evaluation as ev
from radstudy.models import (
    ColumnGroupSelector,
    build_classification_pipeline,
    leave_one_center_out_predictions,
)


# ------------------------------------------------------------------ Brier score
def test_brier_without_censoring_is_the_plain_mean_squared_error():
    rng = np.random.default_rng(0)
    n = 40
    t = rng.exponential(10, n)
    e = np.ones(n, int)
    cols = np.linspace(0, 30, 31)
    S = np.exp(-np.outer(rng.uniform(0.02, 0.2, n), cols))
    surv = pd.DataFrame(S, columns=cols)
    times = [3.0, 7.5, 12.0]
    bs = ev.brier_score_ipcw(t, e, t, e, surv, times)
    for tau, got in zip(times, bs["brier"], strict=True):
        s_tau = S[:, np.searchsorted(cols, tau, side="right") - 1]  # step function
        assert got == pytest.approx(np.mean(((t > tau).astype(float) - s_tau) ** 2))


def test_brier_with_censoring_by_hand():
    # training censoring KM: censored at 2 (5 at risk) and 4 (3 at risk)
    # G(t) = 1 (t < 2), 0.8 (2 <= t < 4), 0.8 * 2/3 = 8/15 (t >= 4)
    train_t, train_e = [1, 2, 3, 4, 5, 6], [1, 0, 1, 0, 1, 1]
    t, e = [1.5, 3.0, 3.5, 5.0], [1, 1, 0, 1]
    surv = pd.DataFrame([[1, 0.2], [1, 0.5], [1, 0.6], [1, 0.8]], columns=[0.0, 4.0])
    # at t = 4.5: event 1.5 -> 0.2^2 / G(1.5-) = 0.04; event 3 -> 0.5^2 / G(3-) = 0.3125;
    # censored 3.5 -> 0; at risk 5 -> (1 - 0.8)^2 / G(4.5) = 0.04 * 15 / 8 = 0.075
    bs = ev.brier_score_ipcw(train_t, train_e, t, e, surv, [4.5])["brier"].iloc[0]
    assert bs == pytest.approx((0.04 + 0.3125 + 0 + 0.075) / 4)
    # an event at a training censoring time is weighted by G(T-), not G(T)
    bs2 = ev.brier_score_ipcw(train_t, train_e, [1.5, 2.0, 3.5, 5.0], e, surv, [4.5])
    assert bs2["brier"].iloc[0] == pytest.approx((0.04 + 0.25 + 0 + 0.075) / 4)


def test_integrated_brier_by_hand_and_against_a_fine_grid():
    # no censoring: BS = 0.01 on [0.5, 1), (0.81 + 0.01)/2 on [1, 2), (0.09 + 0.16)/2 on [2, 2.5)
    surv = pd.DataFrame([[0.9, 0.3], [0.9, 0.6]], columns=[0.0, 2.0])
    ibs = ev.integrated_brier_score([1, 2, 3], [1, 1, 1], [1, 3], [1, 1], surv, 0.5, 2.5)
    assert ibs == pytest.approx((0.01 * 0.5 + 0.41 * 1 + 0.125 * 0.5) / 2)
    # with censoring: the exact step integral equals a midpoint sum on a fine grid
    rng = np.random.default_rng(1)
    n = 60
    t, e = rng.exponential(10, n).round(1), (rng.uniform(size=n) < 0.7).astype(int)
    cols = np.arange(0, 40, 0.5)
    surv = pd.DataFrame(np.exp(-np.outer(rng.uniform(0.02, 0.2, n), cols)), columns=cols)
    edges = np.linspace(2.0, 15.0, 13001)
    mid = (edges[:-1] + edges[1:]) / 2
    fine = ev.brier_score_ipcw(t, e, t, e, surv, mid)["brier"].mean()
    assert ev.integrated_brier_score(t, e, t, e, surv, 2.0, 15.0) == pytest.approx(fine, rel=1e-3)
    assert np.isnan(ev.integrated_brier_score(t, e, t, e, surv, 5.0, 5.0))
    with pytest.raises(ValueError, match="predicted survival starts"):
        ev.brier_score_ipcw(t, e, t, e, surv.iloc[:, 4:], [1.0])


def _surv_table(n=80, seed=0):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t = rng.exponential(10 * np.exp(-risk)).round(2) + 0.1
    c = rng.exponential(25, n).round(2) + 0.1
    pred = pd.DataFrame(
        {
            "case_id": [f"c{i:03d}" for i in range(n)],
            "cohort": np.where(np.arange(n) < n // 2, "train", "test"),
            "time": np.minimum(t, c),
            "event": (t <= c).astype(int),
            "score": risk,
        }
    )
    cols = np.arange(0, 60, 0.25)
    surv = pd.DataFrame(np.exp(-np.outer(np.exp(risk) / 10, cols)), columns=cols)
    return pred, surv


def test_evaluate_survival_reports_brier_and_ibs_only_with_surv():
    pred, surv = _surv_table()
    plain, _ = ev.evaluate_survival(pred, cutoff=0.0, n_boot=50)
    assert not plain["metric"].str.startswith(("brier", "ibs")).any()
    m, _ = ev.evaluate_survival(pred, cutoff=0.0, n_boot=200, surv=surv)
    train = pred[pred["cohort"] == "train"]
    times = ev.evaluation_times(train["time"], train["event"])
    names = [f"brier_t{tau:.3g}" for tau in times] + ["ibs"]
    for cohort in ("test", "train"):
        got = m[(m["cohort"] == cohort) & m["metric"].isin(names)].set_index("metric")
        assert list(got.index) == names
        d = pred["cohort"] == cohort
        args = (train["time"], train["event"], pred["time"][d], pred["event"][d], surv[d])
        want = ev.brier_score_ipcw(*args, times)["brier"].to_numpy()
        assert got.loc[names[:-1], "value"].to_numpy() == pytest.approx(want)
        ibs = ev.integrated_brier_score(*args, times.min(), times.max())
        assert got.loc["ibs", "value"] == pytest.approx(ibs)
        assert (got["ci_low"] <= got["value"]).all() and (got["value"] <= got["ci_high"]).all()
        assert (got["n"] == d.sum()).all()
    # rows of one case (CV repeats) are averaged like the score: duplicates change nothing
    t = pred["cohort"] == "test"
    dup, dup_surv = pd.concat([pred, pred[t]]), pd.concat([surv, surv[t]])
    m2, _ = ev.evaluate_survival(dup, cutoff=0.0, n_boot=200, surv=dup_surv)
    assert m2.equals(m)
    with pytest.raises(ValueError, match="rows"):
        ev.evaluate_survival(pred, cutoff=0.0, n_boot=10, surv=surv.iloc[:-1])


# ----------------------------------------------------------- confusion matrix
def test_evaluate_binary_confusion_matrix_rows():
    pred = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(8)] + [f"d{i}" for i in range(4)],
            "cohort": ["test"] * 8 + ["external:B"] * 4,
            "y_true": [1, 1, 1, 0, 0, 0, 0, 1] + [0, 1, 0, 1],
            "y_prob": [0.9, 0.7, 0.4, 0.6, 0.2, 0.1, 0.55, 0.8] + [0.1, 0.2, 0.3, 0.9],
        }
    )
    m, _ = ev.evaluate_binary(pred, threshold=0.5, n_boot=20)
    # test: positives 0.9 0.7 0.8 caught, 0.4 missed; negatives 0.6 0.55 flagged, 0.2 0.1 not
    # external:B: positive 0.9 caught, 0.2 missed; negatives 0.1 0.3 not flagged
    want = {"test": (3, 2, 2, 1), "external:B": (1, 0, 2, 1)}
    for cohort, (tp, fp, tn, fn) in want.items():
        cm = m[(m["cohort"] == cohort) & m["metric"].isin(["tp", "fp", "tn", "fn"])]
        got = cm.set_index("metric")["value"]
        assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (tp, fp, tn, fn)
        assert cm["ci_low"].isna().all() and cm["ci_high"].isna().all()
        assert (cm["n"] == (8 if cohort == "test" else 4)).all()


# ------------------------------------------------------ leave one center out
def _drop_center(X):
    return X.drop(columns="center")


def _prior_pipe():
    """predict_proba[:, 1] = mean of the training y: shows which rows were fitted on."""
    return Pipeline(
        [("drop", FunctionTransformer(_drop_center)), ("model", DummyClassifier(strategy="prior"))]
    )


class _MeanTime(BaseEstimator):
    """Survival stand-in whose score is the mean training time."""

    def fit(self, X, y):
        self.mean_ = float(y["time"].mean())
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def _centers_table():
    centers = ["B"] * 4 + ["A"] * 3 + ["C"] * 5
    X = pd.DataFrame(
        {"center": centers, "x": np.arange(12.0)},
        index=pd.Index([f"c{i:02d}" for i in range(12)], name="case_id"),
    )
    y = pd.Series([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 1], index=X.index)
    return X, y


def test_leave_one_center_out_binary_never_fits_on_the_held_out_center():
    X, y = _centers_table()
    pred = leave_one_center_out_predictions(_prior_pipe(), X, y)
    assert list(pred.columns) == ["case_id", "center", "repeat", "fold", "y_true", "y_prob"]
    assert list(pred["case_id"]) == sorted(X.index) and (pred["repeat"] == 0).all()
    assert (pred["fold"] == pred["center"]).all()
    assert (pred["center"].to_numpy() == X["center"].to_numpy()).all()
    assert (pred["y_true"].to_numpy() == y.to_numpy()).all()
    for center in ("A", "B", "C"):
        rest = y[X["center"] != center]
        got = pred.loc[pred["center"] == center, "y_prob"]
        assert np.allclose(got, rest.mean())  # the held-out rows' own y never counted
        assert not np.isclose(rest.mean(), y.mean())
    # every held-out case once; a real pipeline runs too
    real = build_classification_pipeline(
        {"name": "logistic"}, 0, [("groups", ColumnGroupSelector(keep_cols=()))]
    )
    Xr = X.assign(T2__f000=np.random.default_rng(0).normal(size=12))
    out = leave_one_center_out_predictions(real, Xr, y)
    assert len(out) == 12 and out["y_prob"].between(0, 1).all()


def test_leave_one_center_out_skips_a_center_leaving_one_class(caplog):
    X, y = _centers_table()
    y[:] = 0
    y[X["center"] == "C"] = [1, 1, 0, 1, 0]  # without C only class 0 remains
    with caplog.at_level(logging.WARNING, logger="radstudy.models"):
        pred = leave_one_center_out_predictions(_prior_pipe(), X, y)
    assert sorted(pred["center"].unique()) == ["A", "B"]
    assert "center C" in caplog.text and "one class" in caplog.text
    for center in ("A", "B"):
        got = pred.loc[pred["center"] == center, "y_prob"]
        assert np.allclose(got, y[X["center"] != center].mean())


def test_leave_one_center_out_survival():
    X, _ = _centers_table()
    y = pd.DataFrame({"time": np.arange(1.0, 13.0) ** 2, "event": [1, 0] * 6}, index=X.index)
    pipe = Pipeline([("drop", FunctionTransformer(_drop_center)), ("model", _MeanTime())])
    pred = leave_one_center_out_predictions(pipe, X, y)
    assert list(pred.columns) == ["case_id", "center", "repeat", "fold", "time", "event", "score"]
    for center in ("A", "B", "C"):
        got = pred[pred["center"] == center]
        assert np.allclose(got["score"], y["time"][X["center"] != center].mean())
        assert (got["time"].to_numpy() == y["time"][X["center"] == center].to_numpy()).all()


def test_vectorised_bootstrap_auc_matches_the_loop():
    from sklearn.metrics import roc_auc_score

    from radstudy.evaluation import bootstrap_auc_ci, bootstrap_ci

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    p = np.round(y * 0.3 + rng.random(80), 1)  # ties
    assert bootstrap_auc_ci(y, p, n=300, seed=5) == pytest.approx(
        bootstrap_ci(roc_auc_score, y, p, n=300, seed=5), abs=1e-12
    )
