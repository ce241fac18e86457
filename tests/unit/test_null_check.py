"""Per-fold vs pooled CV metrics, per-center leave-one-center-out metrics, the
shuffled-label null band (and evaluation.fail_on_null), and SVM probabilities
that keep the SVM's ranking, against hand-computed answers."""

import json
import logging
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index
from scipy.stats import spearmanr
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import roc_auc_score

from radstudy import evaluation as ev
from radstudy import stages
from radstudy.models import build_classification_pipeline, make_classifier, model_card


def _metric(m: pd.DataFrame, cohort: str, metric: str) -> pd.Series:
    return m[(m["cohort"] == cohort) & (m["metric"] == metric)].iloc[0]


# ------------------------------------------------------------- per fold vs pooled
# 8 cases, 2 repeats x 2 folds; fold prevalences differ (3/4 vs 1/4 in repeat 0)
# and each fold's model has its own offset, so pooling mixes the offsets.
#   repeat 0: fold 0 = A B C D (y 1 1 1 0, p .2 .3 .4 .1) -> AUC 1
#             fold 1 = E F G H (y 1 0 0 0, p .9 .6 .7 .8) -> AUC 1
#   repeat 1: fold 0 = A D E F (y 1 0 1 0, p .6 .5 .4 .3) -> AUC 3/4
#             fold 1 = B C G H (y 1 1 0 0, p .2 .1 .3 .4) -> AUC 0
# per-fold mean 0.6875, SD sqrt(0.671875 / 3) = 0.473242
# pooled (each case averaged over the repeats): positives A .4 B .25 C .25 E .65,
# negatives D .3 F .45 G .5 H .6 -> 5 of 16 pairs = 0.3125
def _cv_pred(cohort="cv"):
    rows = [
        ("A", 0, 0, 1, 0.2), ("B", 0, 0, 1, 0.3), ("C", 0, 0, 1, 0.4), ("D", 0, 0, 0, 0.1),
        ("E", 0, 1, 1, 0.9), ("F", 0, 1, 0, 0.6), ("G", 0, 1, 0, 0.7), ("H", 0, 1, 0, 0.8),
        ("A", 1, 0, 1, 0.6), ("D", 1, 0, 0, 0.5), ("E", 1, 0, 1, 0.4), ("F", 1, 0, 0, 0.3),
        ("B", 1, 1, 1, 0.2), ("C", 1, 1, 1, 0.1), ("G", 1, 1, 0, 0.3), ("H", 1, 1, 0, 0.4),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["case_id", "repeat", "fold", "y_true", "y_prob"]).assign(
        cohort=cohort
    )


def test_cv_reports_per_fold_mean_as_auc_and_the_pooled_auc_beside_it():
    m, _ = ev.evaluate_binary(_cv_pred(), threshold=0.5, n_boot=20)
    sd = np.sqrt(0.671875 / 3)
    assert _metric(m, "cv", "auc")["value"] == pytest.approx(0.6875)
    assert _metric(m, "cv", "auc_fold_mean")["value"] == pytest.approx(0.6875)
    assert _metric(m, "cv", "auc_fold_sd")["value"] == pytest.approx(sd)
    assert _metric(m, "cv", "auc_folds")["value"] == 4
    mean_ci = _metric(m, "cv", "auc")
    assert mean_ci["ci_low"] == pytest.approx(0.6875 - 1.959964 * sd / 2, abs=1e-5)
    assert _metric(m, "cv", "auc_pooled")["value"] == pytest.approx(0.3125)
    assert _metric(m, "cv", "auc_bootstrap")["value"] == pytest.approx(0.3125)
    assert not m["metric"].str.startswith("auc_center").any()


def test_cohort_without_folds_has_one_auc_only():
    pred = _cv_pred("test").drop(columns=["repeat", "fold"])
    m, _ = ev.evaluate_binary(pred, threshold=0.5, n_boot=20)
    assert _metric(m, "test", "auc")["value"] == pytest.approx(0.3125)  # case-averaged
    assert not m["metric"].isin(["auc_pooled", "auc_fold_mean", "null_check_pass"]).any()


# ------------------------------------------------------- leave one center out
# held-out centers A (= repeat 0 fold 0 above, AUC 1), B (fold 1, AUC 1) and
# C (y 1 0, p .5 .5: AUC 0.5). Per-center mean 5/6, SD sqrt(1/12); pooled: 9.5/25.
def _loco_pred(name="loco"):
    d = _cv_pred().query("repeat == 0")
    d = d.assign(fold=np.where(d["fold"] == 0, "A", "B"))
    c = pd.DataFrame(
        {"case_id": ["I", "J"], "repeat": 0, "fold": "C", "y_true": [1, 0], "y_prob": 0.5}
    )
    loco = pd.concat([d, c]).assign(cohort=name)
    per = loco.assign(cohort=name + ":" + loco["fold"], fold=np.nan)
    return pd.concat([loco, per], ignore_index=True)


@pytest.mark.parametrize("name", ["loco", "loco_unharmonized"])
def test_loco_reports_the_mean_of_per_center_aucs(name):
    m, _ = ev.evaluate_binary(_loco_pred(name), threshold=0.5, n_boot=20)
    per = [_metric(m, f"{name}:{c}", "auc")["value"] for c in "ABC"]
    assert per == pytest.approx([1.0, 1.0, 0.5])
    assert _metric(m, name, "auc")["value"] == pytest.approx(5 / 6)
    assert _metric(m, name, "auc_center_mean")["value"] == pytest.approx(np.mean(per))
    assert _metric(m, name, "auc_center_sd")["value"] == pytest.approx(np.sqrt(1 / 12))
    assert _metric(m, name, "auc_centers")["value"] == 3
    assert _metric(m, name, "auc_pooled")["value"] == pytest.approx(9.5 / 25)
    assert not m["metric"].str.startswith("auc_fold").any()
    assert f"{name}:A" in set(m["cohort"]) and "auc_pooled" not in set(
        m.loc[m["cohort"] == f"{name}:A", "metric"]
    )


def test_survival_cv_reports_per_fold_mean_c_index():
    # fold 0 ranks perfectly (C = 1), fold 1 (later times, scores offset by 10) exactly
    # backwards (C = 0); pooled, all 16 cross pairs are discordant: 6 / 28
    t = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    s = [4.0, 3.0, 2.0, 1.0, 11.0, 12.0, 13.0, 14.0]
    pred = pd.DataFrame(
        {
            "case_id": list("ABCDEFGH"),
            "cohort": "cv",
            "repeat": 0,
            "fold": [0] * 4 + [1] * 4,
            "time": t,
            "event": 1,
            "score": s,
        }
    )
    m, _ = ev.evaluate_survival(pred, cutoff=0.0, n_boot=20)
    assert _metric(m, "cv", "c_index")["value"] == pytest.approx(0.5)
    assert _metric(m, "cv", "c_index_fold_sd")["value"] == pytest.approx(np.sqrt(0.5))
    assert _metric(m, "cv", "c_index_folds")["value"] == 2
    assert concordance_index(t, -np.asarray(s), np.ones(8)) == pytest.approx(6 / 28)
    assert _metric(m, "cv", "c_index_pooled")["value"] == pytest.approx(6 / 28)


# ------------------------------------------------------------------ null band
def test_null_se_by_hand():
    assert ev.null_auc_se(50, 50) == pytest.approx(np.sqrt(101 / 30000))  # 0.058023
    assert ev.null_auc_se(50, 50) == pytest.approx(0.0580230, abs=1e-7)
    assert ev.null_auc_se(10, 30) == pytest.approx(np.sqrt(41 / 3600))  # 0.106719
    assert np.isnan(ev.null_auc_se(0, 30))


def _folds(n_folds=5, pos=10, neg=10, repeats=1, auc=0.75, cohort="cv_shuffled"):
    """Folds of ``pos`` + ``neg`` cases whose AUC is exactly ``auc`` (0.75 or 0.5)."""
    rows, k = [], 0
    for r in range(repeats):
        for f in range(n_folds):
            neg_s = np.arange(1, neg + 1) / (neg + 2)
            if auc == 0.75:  # positives above 10, 10, 10, 10, 10, 10, 5, 5, 5, 0 negatives
                pos_s = np.array([10.5] * 6 + [5.5] * 3 + [0.5]) / (neg + 2)
            else:
                pos_s = neg_s.copy()  # ties only: AUC 0.5
            for y, ss in ((1, pos_s[:pos]), (0, neg_s)):
                for v in ss:
                    rows.append((f"c{k % (n_folds * (pos + neg)):03d}", r, f, y, v))
                    k += 1
    d = pd.DataFrame(rows, columns=["case_id", "repeat", "fold", "y_true", "y_prob"])
    return d.assign(cohort=cohort)


def test_null_band_by_hand():
    # 5 folds of 10 + 10: SE = sqrt(5 * 21 / 1200) / 5 = 0.0591608, z = 2.5758293
    se, lo, hi = ev.null_auc_band(_folds(repeats=2))
    assert se == pytest.approx(np.sqrt(5 * 21 / 1200) / 5)
    assert (lo, hi) == pytest.approx((0.5 - 0.152388, 0.5 + 0.152388), abs=1e-6)
    # the whole cohort without folds: sqrt(101 / 30000)
    se, lo, hi = ev.null_auc_band(_folds().drop(columns="fold"))
    assert se == pytest.approx(0.0580230, abs=1e-7)
    assert hi == pytest.approx(0.5 + 2.5758293 * 0.0580230, abs=1e-6)


def test_null_band_takes_the_widest_repeat():
    a = _folds()  # 5 folds of 20
    b = _folds(n_folds=2, pos=10, neg=10).assign(repeat=1)  # 2 folds of 20: wider
    se, _, _ = ev.null_auc_band(pd.concat([a, b]))
    assert se == pytest.approx(np.sqrt(2 * 21 / 1200) / 2)


def test_evaluate_binary_flags_a_shuffled_auc_outside_the_band():
    m, _ = ev.evaluate_binary(_folds(), threshold=0.5, n_boot=20)
    assert _metric(m, "cv_shuffled", "auc")["value"] == pytest.approx(0.75)
    assert _metric(m, "cv_shuffled", "auc_null_band_high")["value"] == pytest.approx(0.652388)
    assert _metric(m, "cv_shuffled", "null_check_pass")["value"] == 0
    m, _ = ev.evaluate_binary(_folds(auc=0.5), threshold=0.5, n_boot=20)
    assert _metric(m, "cv_shuffled", "null_check_pass")["value"] == 1


def _evaluate(tmp_path, shuffled_auc: float, fail_on_null: bool):
    cv = pd.concat([_folds(cohort="cv"), _folds(auc=shuffled_auc)])
    cv.to_csv(tmp_path / "cv.tsv", sep="\t", index=False)
    (tmp_path / "card.json").write_text(json.dumps({"endpoint": "rec", "model": "svm"}))
    train = _folds(cohort="train").drop(columns=["repeat", "fold", "cohort"])
    train.assign(center="A", split="train").to_csv(tmp_path / "A.tsv", sep="\t", index=False)
    cfg = {
        "seed": 1,
        "endpoints": {"rec": {"type": "binary"}},
        "evaluation": {"bootstrap": 100, "threshold": 0.5, "fail_on_null": fail_on_null},
    }
    stages.evaluate_model(
        str(tmp_path / "cv.tsv"),
        str(tmp_path / "card.json"),
        [str(tmp_path / "A.tsv")],
        "rec",
        cfg,
        str(tmp_path / "metrics.tsv"),
        str(tmp_path / "curves.parquet"),
    )
    return pd.read_csv(tmp_path / "metrics.tsv", sep="\t")


def test_fail_on_null_stops_with_one_line_naming_endpoint_model_auc_and_band(tmp_path):
    with pytest.raises(SystemExit) as err:
        _evaluate(tmp_path, 0.75, fail_on_null=True)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("endpoint rec", "model svm", "AUC 0.750", "[0.348, 0.652]"):
        assert part in msg, msg
    assert not (tmp_path / "metrics.tsv").exists()


def test_null_failure_without_fail_on_null_is_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m = _evaluate(tmp_path, 0.75, fail_on_null=False)
    assert _metric(m, "cv_shuffled", "null_check_pass")["value"] == 0
    assert "OUTSIDE the 99% null band" in caplog.text
    assert _metric(m, "cv", "auc_folds")["value"] == 5  # the folds reach the metrics
    m = _evaluate(tmp_path, 0.5, fail_on_null=True)  # inside the band: no stop
    assert _metric(m, "cv_shuffled", "null_check_pass")["value"] == 1


def test_report_banner_names_the_failing_model():
    from radstudy.report import null_banner, null_check_failures

    m, _ = ev.evaluate_binary(_folds(), threshold=0.5, n_boot=20)
    failed = null_check_failures("rec", "svm", m)
    assert failed == ["rec / svm: cv_shuffled AUC 0.750 outside the 99% null band [0.348, 0.652]"]
    assert "Null check failed" in null_banner(failed) and null_banner([]) == ""


# ------------------------------------------------------------------------ SVM
def _toy(n=60, seed=0, signal=True):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"radiomics__f{i}" for i in range(4)])
    y = (X["radiomics__f0"] > 0).astype(int) if signal else pd.Series(rng.permutation(n) % 2)
    return X, y


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "svm"},
        {"name": "svm", "params": {"C": 100, "gamma": 0.01}},
        {"name": "svm", "grid": {"C": [0.1, 1, 10]}},
        {"name": "svm", "params": {"kernel": "linear"}},
    ],
)
def test_svm_fits_without_warnings_and_ranks_a_separable_set(spec):
    X, y = _toy()
    Xt, yt = _toy(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe = build_classification_pipeline(spec, 0).fit(X, y)
        p = pipe.predict_proba(Xt)[:, 1]
    assert roc_auc_score(yt, p) > 0.9
    card = model_card(pipe, X, y, spec)
    if "grid" in spec:
        assert set(card["best_params"]) == {"C"}
    if spec.get("params", {}).get("kernel") == "linear":  # coef_ of the SVC reaches the card
        w = {s["feature"]: s["weight"] for s in card["selected_features"]}
        assert w["radiomics__f0"] > 0 and abs(w["radiomics__f0"]) == max(map(abs, w.values()))
    svc = pipe.steps[-1][1].calibrated_classifiers_[0].estimator
    if "params" in spec and "C" in spec["params"]:
        assert (svc.C, svc.gamma) == (100, 0.01)
    pickle.loads(pickle.dumps(pipe))  # joblib-dumpable


def test_svm_probabilities_never_invert_the_decision_function():
    """On chance-level data the plain sigmoid often gets the wrong sign; the
    guarded one keeps the SVM's ranking every time."""
    wrong_sign = 0
    for seed in range(8):
        X, y = _toy(n=40, seed=seed, signal=False)
        Xt, _ = _toy(n=40, seed=seed + 100)
        plain = CalibratedClassifierCV(**make_classifier("svm", None, seed).get_params(deep=False))
        plain.fit(X, y)
        wrong_sign += plain.calibrated_classifiers_[0].calibrators[0].a_ > 0
        clf = make_classifier("svm", None, seed).fit(X, y)
        assert clf.calibrated_classifiers_[0].calibrators[0].a_ < 0
        d = clf.calibrated_classifiers_[0].estimator.decision_function(Xt)
        assert spearmanr(clf.predict_proba(Xt)[:, 1], d)[0] == pytest.approx(1.0)
    assert wrong_sign > 0  # the guard was exercised


@pytest.mark.parametrize("name", ["logistic", "random_forest", "knn", "xgboost", "mlp"])
def test_other_classifiers_fit_without_warnings(name):
    X, y = _toy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_classifier(name, None, 0).fit(X, y).predict_proba(X)


def test_logistic_penalty_is_translated_not_deprecated():
    X, y = _toy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = make_classifier("logistic", {"penalty": "l1", "solver": "liblinear"}, 0).fit(X, y)
    assert clf.l1_ratio == 1.0


def test_report_model_section_shows_per_fold_mean_and_pooled():
    from radstudy.report import fold_summary_note, model_section

    m, curves = ev.evaluate_binary(pd.concat([_cv_pred(), _loco_pred()]), threshold=0.5, n_boot=20)
    note = fold_summary_note(m)
    assert "cv: AUC mean of 4 per-fold values 0.688 +- 0.473" in note
    assert "pooled over the folds 0.312" in note
    assert "loco: AUC mean of 3 per-center values 0.833 +- 0.289" in note
    assert "pooled over the centers 0.380" in note
    assert note in model_section("rec", "svm", {}, m, curves, pd.DataFrame())
