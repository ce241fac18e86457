"""Selection, models, evaluation and survival on small data with known answers."""

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from sklearn.metrics import roc_auc_score

from radstudy import evaluation as ev
from radstudy.models import (
    ColumnGroupSelector,
    build_classification_pipeline,
    cross_validated_predictions,
)
from radstudy.reproducibility import ICCFilter, category, icc_table, inter_intra
from radstudy.selection import (
    ConcordanceSelector,
    CorrelationPruner,
    LassoSelector,
    MRMRSelector,
    UnivariateSelector,
    VarianceFilter,
    build_selector,
)
from radstudy.survival import CoxScoreModel, km_logrank, risk_groups


def _data(n=120, p=50, informative=3, seed=0, shuffle=False):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i:03d}" for i in range(p)])
    X.index = pd.Index([f"c{i:03d}" for i in range(n)], name="case_id")
    logit = X.iloc[:, :informative].sum(axis=1) * 2.5
    y = pd.Series((logit + rng.logistic(size=n) > 0).astype(int), index=X.index)
    if shuffle:
        y = pd.Series(rng.permutation(y.to_numpy()), index=X.index)
    return X, y


# ----------------------------------------------------------------- selection
def test_univariate_and_lasso_find_the_informative_features():
    X, y = _data(n=200)
    uni = UnivariateSelector(test="ttest", alpha=0.01, fdr=True).fit(X, y)
    assert {"T2__f000", "T2__f001", "T2__f002"} <= set(uni.selected_)
    assert len(uni.selected_) <= 6
    lasso = LassoSelector(cv=5, random_state=0).fit(X, y)
    assert {"T2__f000", "T2__f001", "T2__f002"} <= set(lasso.selected_)
    assert lasso.path_.shape == (20, 50) and len(lasso.cv_error_) == 20
    mr = MRMRSelector(k=3).fit(X, y)
    assert len(set(mr.selected_) & {"T2__f000", "T2__f001", "T2__f002"}) >= 2


def test_correlation_pruner_drops_duplicates_and_keeps_clinical():
    X, y = _data()
    X["T2__dup"] = X["T2__f000"] * 2 + 1
    X["clinical__age"] = 1.0
    pr = CorrelationPruner(threshold=0.9).fit(X, y)
    assert ("T2__dup" in pr.selected_) != ("T2__f000" in pr.selected_)
    assert "clinical__age" in pr.transform(X).columns
    vf = VarianceFilter().fit(X.assign(T2__const=3.0), y)
    assert "T2__const" in vf.reasons_ and vf.reasons_["T2__const"] == "near-constant"


def test_build_selector_order_and_unknown_step():
    steps = build_selector({"variance": {}, "lasso": {"cv": 3}}, random_state=5)
    assert [n for n, _ in steps] == ["variance", "lasso"]
    assert steps[1][1].random_state == 5
    with pytest.raises(ValueError, match="unknown selection step"):
        build_selector({"magic": {}})


# ---------------------------------------------------------------- reproducibility
def test_icc_matches_pingouin_and_categories():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(30, 4))
    rows = []
    for r, noise in [("R1", 0.1), ("R2", 0.5)]:
        vals = truth + rng.normal(scale=noise, size=truth.shape) + (0.3 if r == "R2" else 0)
        for i in range(30):
            rows.append(
                {"case_id": f"c{i}", "reader": r, **{f"T2__f{j}": vals[i, j] for j in range(4)}}
            )
    long = pd.DataFrame(rows)
    t = icc_table(long, ["R1", "R2"]).set_index("feature")
    for j in range(4):
        ref = pg.intraclass_corr(long, targets="case_id", raters="reader", ratings=f"T2__f{j}")
        ref = ref.set_index("Type").loc["ICC(A,1)", "ICC"]
        assert t.loc[f"T2__f{j}", "icc"] == pytest.approx(ref, abs=1e-9)
    assert category(0.49) == "poor" and category(0.5) == "moderate"
    assert category(0.9) == "excellent" and category(float("nan")) == "undefined"


def test_inter_intra_and_filter():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(20, 2))
    rows = []
    for r in ["R1", "R2", "R1r"]:
        for i in range(20):
            noisy = base[i, 1] if r != "R2" else rng.normal()  # f1 reproducible only intra
            rows.append({"case_id": f"c{i}", "reader": r, "T2__a": base[i, 0], "T2__b": noisy})
    res = inter_intra(pd.DataFrame(rows), readers=["R1", "R2"], repeat_pairs={"R1r": "R1"})
    inter = res[res["kind"] == "inter"].set_index("feature")["icc"]
    intra = res[res["kind"] == "intra"].set_index("feature")["icc"]
    assert inter["T2__a"] == pytest.approx(1.0) and inter["T2__b"] < 0.5
    assert intra["T2__b"] == pytest.approx(1.0)
    X = pd.DataFrame({"center": ["A"], "T2__a": [1.0], "T2__b": [2.0], "clinical__x": [0.0]})
    assert list(ICCFilter(keep=["T2__a"]).fit(X).transform(X).columns) == [
        "center",
        "T2__a",
        "clinical__x",
    ]


# --------------------------------------------------------------------- models
def _pipe(seed=0, smote=False):
    pre = [("groups", ColumnGroupSelector(groups=("radiomics",)))] + build_selector(
        {"variance": {}, "univariate": {"alpha": 0.1, "fdr": False}, "lasso": {"cv": 3}}, seed
    )
    return build_classification_pipeline({"name": "logistic", "smote": smote}, seed, pre)


def test_cv_finds_signal():
    X, y = _data(n=100, p=100)
    pred = cross_validated_predictions(_pipe(), X, y, n_splits=5, random_state=0)
    assert ev.cv_auc(pred)[0] > 0.75


def test_shuffled_labels_give_chance_auc():
    """The null check: selection inside the folds, labels shuffled -> CV AUC ~ 0.5."""
    aucs = []
    for seed in range(3):
        X, y = _data(n=200, p=300, seed=seed, shuffle=True)
        pred = cross_validated_predictions(_pipe(seed), X, y, n_splits=5, random_state=seed)
        aucs.append(ev.cv_auc(pred)[0])
    assert abs(np.mean(aucs) - 0.5) < 0.07


@pytest.mark.parametrize("name", ["svm", "random_forest", "knn", "xgboost", "mlp"])
def test_every_classifier_runs_with_smote(name):
    X, y = _data(n=60, p=10)
    pipe = build_classification_pipeline(
        {"name": name, "smote": True}, 0, [("groups", ColumnGroupSelector(groups=("radiomics",)))]
    )
    proba = pipe.fit(X, y).predict_proba(X)[:, 1]
    assert roc_auc_score(y, proba) > 0.7


# ------------------------------------------------------------------ evaluation
def test_delong_ci_agrees_with_bootstrap():
    X, y = _data(n=200, p=3)
    p = 1 / (1 + np.exp(-X.iloc[:, 0].to_numpy()))
    auc, lo, hi = ev.auc_ci_delong(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p))
    blo, bhi = ev.bootstrap_ci(roc_auc_score, y.to_numpy(), p, n=1000, seed=1)
    assert lo == pytest.approx(blo, abs=0.02) and hi == pytest.approx(bhi, abs=0.02)
    assert ev.auc_ci_delong([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 1.0
    assert ev.delong_test(y, p, p) == 1.0


def test_threshold_calibration_and_decision_curve():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=4000) < p).astype(int)  # perfectly calibrated
    curve, slope, intercept, brier = ev.calibration(y, p)
    assert slope == pytest.approx(1.0, abs=0.1) and intercept == pytest.approx(0.0, abs=0.1)
    dca = ev.decision_curve(y, p, thresholds=[0.2])
    prev = y.mean()
    assert dca["treat_all"].iloc[0] == pytest.approx(prev - (1 - prev) * 0.25)
    tm = ev.threshold_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.2], 0.5)
    assert (tm["tp"], tm["fp"], tm["tn"], tm["fn"]) == (1, 1, 1, 1)
    assert tm["sensitivity"][0] == 0.5 and tm["sensitivity"][1] < 0.5 < tm["sensitivity"][2]


# -------------------------------------------------------------------- survival
def _surv(n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["T2__a", "T2__b", "T2__c"])
    t = rng.exponential(10 * np.exp(-X["T2__a"].to_numpy()))
    c = rng.uniform(5, 30, n)
    y = pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int)})
    return X, y


def test_cox_model_pickles_to_the_same_bytes():
    import pickle
    import time

    X, y = _surv()
    a = pickle.dumps(CoxScoreModel(penalizer=0.01).fit(X, y), protocol=4)
    time.sleep(1.1)  # lifelines records the fit time, to the second
    b = pickle.dumps(CoxScoreModel(penalizer=0.01).fit(X, y), protocol=4)
    assert a == b


def test_cox_score_cindex_and_training_cutoff():
    X, y = _surv()
    model = CoxScoreModel(penalizer=0.01).fit(X, y)
    score = model.predict(X)
    c, lo, hi = ev.cindex_ci(y["time"], y["event"], score, n_boot=200)
    assert c > 0.7 and lo < c < hi
    assert ev.cindex_ci(y["time"], y["event"], -y["time"], n_boot=10)[0] > 0.95
    cut, groups = risk_groups(score[:100], score[100:])
    cut2, _ = risk_groups(score[:100], score[100:] * 10)  # test scores never move the cutoff
    assert cut == cut2 == pytest.approx(np.median(score[:100]))
    km = km_logrank(y["time"], y["event"], np.where(score > cut, "high", "low"))
    assert km["p"] < 0.01
    sel = ConcordanceSelector(k=1).fit(X, y)
    assert sel.selected_ == ["T2__a"]


def test_time_dependent_auc_equals_auc_without_censoring():
    rng = np.random.default_rng(1)
    t = rng.exponential(10, 300)
    e = np.ones(300, int)
    s = -t + rng.normal(0, 5, 300)
    tau = float(np.median(t))
    td = ev.time_dependent_auc(t, e, t, e, s, [tau])["auc"].iloc[0]
    assert td == pytest.approx(roc_auc_score(t <= tau, s), abs=1e-9)
