"""The automatic model search (radstudy.search): deterministic, nested (never sees an
outer test row), ensembles, survival models, the config shorthand, the history table
and the report's search subsection."""

import inspect
import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from radstudy import config as rc
from radstudy import search as rs
from radstudy.models import cross_validated_predictions
from radstudy.selection import column_concordance

FAST = {"n_trials": 6, "n_estimators": 20, "inner_cv": 3}


def _binary(n=60, p=30, seed=0, signal=1.5):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i:02d}" for i in range(p)])
    X.index = pd.Index([f"c{i:03d}" for i in range(n)], name="case_id")
    lin = signal * (X["T2__f00"] - X["T2__f01"] + X["T2__f02"])
    y = pd.Series((lin + rng.normal(size=n) > 0).astype(int), index=X.index)
    return X, y


def _survival(n=120, p=12, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i:02d}" for i in range(p)])
    risk = 1.2 * X["T2__f00"] - 0.8 * X["T2__f01"]
    t_event = rng.exponential(np.exp(-risk))
    t_cens = rng.exponential(2.0, size=n)
    y = pd.DataFrame(
        {"time": np.minimum(t_event, t_cens) + 1e-3, "event": (t_event <= t_cens).astype(int)}
    )
    return X, y


# ------------------------------------------------------------------------ determinism
def test_same_seed_same_history_and_predictions_whatever_n_jobs():
    X, y = _binary()
    a = rs.ModelSearch(**FAST, random_state=5).fit(X, y)
    b = rs.ModelSearch(**FAST, random_state=5, n_jobs=2).fit(X, y)
    pd.testing.assert_frame_equal(a.history_, b.history_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert len(a.history_) == FAST["n_trials"]
    assert list(a.history_.columns) == ["trial", "value", "params", "state"]
    c = rs.ModelSearch(**FAST, random_state=6).fit(X, y)
    assert not a.history_["params"].equals(c.history_["params"])  # the seed matters


# --------------------------------------------------------------------------- nesting
LOG: list[tuple[str, frozenset]] = []


class _Mark(BaseEstimator, TransformerMixin):
    """Notes the rows an outer fit starts with."""

    def fit(self, X, y=None):
        LOG.append(("outer", frozenset(X["id"].astype(int))))
        return self

    def transform(self, X):
        return X


class _Recorder(ClassifierMixin, BaseEstimator):
    """A classifier that notes the ids (column 0, passed unscaled) it is fit on."""

    def fit(self, X, y):
        LOG.append(("fit", frozenset(np.asarray(X)[:, 0].astype(int))))
        self.classes_ = np.array([0, 1])
        self.w_ = np.asarray(X)[:, 1:].mean(0)
        return self

    def predict_proba(self, X):
        s = 1 / (1 + np.exp(-np.asarray(X)[:, 1:] @ np.sign(self.w_)))
        return np.column_stack([1 - s, s])


def test_search_never_sees_an_outer_test_row(monkeypatch):
    X, y = _binary(n=45, p=6)
    X.insert(0, "id", np.arange(len(X)))  # column 0: passed to the model as it is
    monkeypatch.setattr(rs, "make_model", lambda *a, **k: _Recorder())
    LOG.clear()
    search = rs.ModelSearch(
        n_trials=3,
        inner_cv=3,
        scaling=("none",),
        selectors=("none",),
        smote="never",  # SMOTE would add interpolated rows
        ensemble="none",  # one refit per search
        random_state=1,
    )
    pred = cross_validated_predictions(
        Pipeline([("mark", _Mark()), ("model", search)]), X, y, n_splits=3, random_state=2
    )
    ids = dict(zip(X.index, X["id"], strict=True))
    outer_fits = [s for kind, s in LOG if kind == "outer"]
    assert len(outer_fits) == 3
    current, n_inner, n_refit = None, 0, 0
    for kind, rows in LOG:
        if kind == "outer":
            current = rows
            continue
        assert rows <= current  # only this outer fold's training rows
        if rows == current:
            n_refit += 1  # the refit of the chosen configuration on all of them
        else:
            n_inner += 1
    assert n_refit == 3 and n_inner == 3 * 3 * 3
    # each outer fold's predicted rows were never among the rows its searches saw
    for i, train in enumerate(outer_fits):
        held_out = {ids[c] for c in pred.loc[pred["fold"] == i, "case_id"]}
        assert held_out and not held_out & train
        assert held_out | train == set(range(len(X)))


def test_reported_estimate_is_the_outer_cv_not_the_inner_winner():
    """Pure noise: the best inner-CV AUC of a search is optimistic (it picked the
    winner on those folds); the nested outer CV stays near 0.5."""
    X, y = _binary(n=60, p=60, seed=3, signal=0.0)
    free = {"n_trials": 12, "n_estimators": 20, "warm_start": False}  # TPE's picks only
    search = rs.ModelSearch(**free, random_state=0)
    inner = search.fit(X, y).best_score_
    pred = cross_validated_predictions(
        Pipeline([("model", rs.ModelSearch(**free, random_state=0))]),
        X,
        y,
        n_splits=3,
        random_state=0,
    )
    outer = roc_auc_score(pred["y_true"], pred["y_prob"])
    assert inner > 0.6
    assert abs(outer - 0.5) < 0.15
    assert inner - outer > 0.05


# ------------------------------------------------------------------------- ensembles
def test_warm_start_tries_the_starting_configurations_first():
    X, y = _binary()
    m = rs.ModelSearch(**{**FAST, "n_trials": 7}, random_state=0).fit(X, y)
    space = m._space(False, X.shape[1], y.mean())
    want = rs.warm_start_params(space, survival=False)
    assert [w["model"] for w in want] == [
        "logistic",
        "logistic",
        "extra_trees",
        "svm_rbf",
        "random_forest",
    ]
    first = [json.loads(p) for p in m.history_["params"][: len(want)]]
    assert first == want
    # only the parts the space has: no starting configuration for a model left out
    narrow = rs.ModelSearch(**FAST, classifiers=("knn",), random_state=0)
    assert rs.warm_start_params(narrow._space(False, 30, 0.5), survival=False) == []
    cold = rs.ModelSearch(**FAST, warm_start=False, random_state=0).fit(X, y)
    assert json.loads(cold.history_["params"][0]) != want[0]


def test_inner_repeats_score_each_configuration_on_more_folds(monkeypatch):
    X, y = _binary()
    seen = []
    real = rs._fit_score

    def spy(cfg, Xtr, *a):
        seen.append(len(Xtr))
        return real(cfg, Xtr, *a)

    monkeypatch.setattr(rs, "_fit_score", spy)
    rs.ModelSearch(**{**FAST, "n_trials": 1}, inner_repeats=2, random_state=0).fit(X, y)
    assert len(seen) == 3 * 2


def test_decorrelate_drops_near_duplicates_before_the_search():
    X, y = _binary(n=60, p=12, seed=2)
    rng = np.random.default_rng(0)
    X["T2__dup"] = X["T2__f00"] * 3 + rng.normal(scale=1e-3, size=len(X))  # r ~ 1
    X["clinical__age"] = X["T2__f01"]  # clinical: never dropped, never dropping
    keep = rs.decorrelated_columns(
        X.to_numpy(float), np.array([not c.startswith("clinical__") for c in X.columns]), 0.9
    )
    names = list(X.columns[keep])
    assert "T2__dup" not in names and "T2__f00" in names and "clinical__age" in names
    assert "T2__f01" in names and len(names) == X.shape[1] - 1
    m = rs.ModelSearch(**FAST, random_state=0).fit(X, y)
    assert "T2__dup" not in m.selected_features_
    assert m.predict_proba(X).shape == (len(X), 2)  # the full table in, as in training
    everything = rs.ModelSearch(**FAST, decorrelate=1.0, random_state=0).fit(X, y)
    assert len(everything.columns_) == X.shape[1]


def test_average_ensemble_is_the_mean_of_its_members():
    X, y = _binary(seed=1)
    m = rs.ModelSearch(**FAST, ensemble="average", top_k=3, random_state=2).fit(X, y)
    assert len(m.members_) == 3 and len(set(m.member_trials_)) == 3
    params = m.history_.set_index("trial").loc[m.member_trials_, "params"]
    assert params.nunique() == 3  # distinct configurations
    assert len({c["model"] for c in m.member_configs_}) == 3  # of distinct model families
    same = rs.ModelSearch(
        **FAST, top_k=3, members="distinct_configurations", classifiers=("logistic",)
    ).fit(X, y)
    assert len(same.members_) == 3 and {c["model"] for c in same.member_configs_} == {"logistic"}
    mean = np.mean([c.predict_proba(X.to_numpy())[:, 1] for c in m.members_], axis=0)
    np.testing.assert_allclose(m.predict_proba(X)[:, 1], mean)
    assert m.member_trials_[0] == m.best_trial_
    Xt, yt = _binary(seed=11)
    assert roc_auc_score(yt, m.predict_proba(Xt)[:, 1]) > 0.75


def test_stacking_learns_on_inner_out_of_fold_predictions():
    X, y = _binary(seed=2)
    m = rs.ModelSearch(**FAST, ensemble="stacking", top_k=3, random_state=2).fit(X, y)
    assert m.meta_.coef_.shape == (1, 3)
    p = m.predict_proba(X)[:, 1]
    assert ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, m.meta_.predict_proba(m._member_scores(X))[:, 1])
    Xt, yt = _binary(seed=12)
    assert roc_auc_score(yt, m.predict_proba(Xt)[:, 1]) > 0.75
    summary = m.summary()
    assert summary["ensemble"]["method"] == "stacking"
    assert len(summary["ensemble"]["members"]) == 3


# -------------------------------------------------------------------------- survival
@pytest.mark.parametrize("model", rs.SURVIVAL_MODELS)
def test_survival_search_gives_a_risk_score_and_survival_curves(model):
    X, y = _survival()
    m = rs.ModelSearch(n_trials=3, n_estimators=30, survival_models=(model,), random_state=0).fit(
        X.iloc[:80], y.iloc[:80]
    )
    Xt, yt = X.iloc[80:], y.iloc[80:]
    risk = m.predict(Xt)
    c = column_concordance(yt["time"].to_numpy(), yt["event"].to_numpy(), -risk[:, None])[0]
    assert c > 0.6
    assert m.best_params_["model"] == model
    times = [0.0, 0.2, 0.5, 1.0]
    S = m.survival_function(Xt, times)
    assert S.shape == (4, len(Xt))
    assert (np.diff(S.to_numpy(), axis=0) <= 1e-9).all()  # non-increasing in t
    assert ((S.to_numpy() >= 0) & (S.to_numpy() <= 1 + 1e-9)).all()


@pytest.mark.parametrize("method", ["average", "stacking"])
def test_survival_ensembles(method):
    X, y = _survival(seed=4)
    m = rs.ModelSearch(n_trials=5, n_estimators=30, ensemble=method, top_k=2, random_state=1).fit(
        X.iloc[:80], y.iloc[:80]
    )
    Xt, yt = X.iloc[80:], y.iloc[80:]
    c = column_concordance(yt["time"].to_numpy(), yt["event"].to_numpy(), -m.predict(Xt)[:, None])
    assert c[0] > 0.6
    assert m.survival_function(Xt, [0.1, 1.0]).shape == (2, len(Xt))


# --------------------------------------------------------------- rankings, time cap
def test_rankings_put_the_signal_first():
    X, y = _binary(n=80, p=40, seed=7, signal=2.0)
    for method in ("anova", "mannwhitney", "lasso", "mrmr", "relieff"):
        top = rs.rank_features(method, X.to_numpy(), y.to_numpy(), 5)[:5]
        assert len({0, 1, 2} & set(top.tolist())) >= 2, method


def test_mrmr_order_is_mrmr_selections():
    from mrmr import mrmr_classif

    X, y = _binary(n=50, p=40, seed=8)
    Xn = X.set_axis([str(i) for i in range(X.shape[1])], axis=1).reset_index(drop=True)
    want = mrmr_classif(Xn, y.reset_index(drop=True), K=10, n_jobs=1, show_progress=False)
    assert rs.mrmr_order(X.to_numpy(), y.to_numpy(), 10) == [int(c) for c in want]


def test_clinical_columns_are_never_ranked_away():
    X, y = _binary(seed=9)
    X["clinical__age"] = np.arange(len(X), dtype=float)
    m = rs.ModelSearch(
        n_trials=2, n_estimators=20, selectors=("anova",), k_min=2, k_max=2, random_state=0
    ).fit(X, y)
    assert "clinical__age" in m.selected_features_
    assert len(m.selected_features_) == 3


def test_time_cap_stops_early_with_a_warning(caplog):
    X, y = _binary()
    with caplog.at_level(logging.WARNING, logger="radstudy.search"):
        m = rs.ModelSearch(n_trials=50, timeout_s=1e-6, n_estimators=20).fit(X, y)
    assert m.timed_out_ and len(m.history_) < 50
    assert "machine" in caplog.text


# ---------------------------------------------------------------------------- config
def test_auto_shorthand_validates_and_is_filled_in():
    schema = rc.load_schema()
    cfg = {
        "cohort": {"sheet": "t.csv", "features_table": "t.csv"},
        "endpoints": {"y": {"type": "binary", "column": "Target"}},
        "models": {"y": "auto"},
    }
    rc.check_config(cfg, schema)
    full = rc.with_defaults(cfg)
    rc.check_semantics(full)
    spec = full["models"]["y"]["auto"]
    assert spec["groups"] == ["radiomics", "clinical"]
    assert spec["search"]["n_trials"] == 40 and spec["search"]["ensemble"]["method"] == "average"
    with pytest.raises(Exception, match="auto"):
        rc.check_config({**cfg, "models": {"y": "automatic"}}, schema)
    with pytest.raises(Exception, match="did you mean n_trials"):
        bad = {"y": {"m": {"groups": ["radiomics"], "search": {"n_trial": 3}}}}
        rc.check_config({**cfg, "models": bad}, schema)
    both = {"y": {"m": {"groups": ["radiomics"], "search": {}, "classifier": {"name": "svm"}}}}
    with pytest.raises(Exception, match="search replaces classifier"):
        rc.check_semantics(rc.with_defaults({**cfg, "models": both}))


def test_an_endpoint_without_models_gets_the_search():
    cfg = rc.with_defaults(
        {
            "cohort": {"sheet": "t.csv", "features_table": "t.csv"},
            "endpoints": {
                "y": {"type": "binary", "column": "Target"},
                "os": {"type": "survival", "time": "t", "event": "e"},
            },
        }
    )
    for ep in ("y", "os"):
        assert list(cfg["models"][ep]) == ["auto"]
        assert "search" in cfg["models"][ep]["auto"]


def test_search_defaults_are_the_estimators_defaults():
    props = rc.load_schema()["properties"]["models"]["additionalProperties"][
        "additionalProperties"
    ]["properties"]["search"]["properties"]
    sig = inspect.signature(rs.ModelSearch).parameters
    for key, prop in props.items():
        if key == "ensemble":
            ens = prop["properties"]
            assert sig["ensemble"].default == ens["method"]["default"]
            assert sig["top_k"].default == ens["top_k"]["default"]
            assert sig["members"].default == ens["members"]["default"]
            continue
        default = sig[key].default
        want = list(default) if isinstance(default, tuple) else default
        assert prop["default"] == want, key
    spec = rc.with_defaults(
        {
            "cohort": {"sheet": "t.csv", "features_table": "t.csv"},
            "endpoints": {"y": {"type": "binary", "column": "Target"}},
            "models": {"y": "auto"},
        }
    )["models"]["y"]["auto"]["search"]
    built = rs.ModelSearch.from_spec(spec, random_state=0).get_params()
    assert built == {**rs.ModelSearch().get_params(), "random_state": 0}


# ------------------------------------------------------------- stage, history, report
def _files(tmp_path, n=40):
    X, y = _binary(n=n, p=12, seed=4)
    X.insert(0, "split", "train")
    X.insert(0, "center", "A")
    X.to_parquet(tmp_path / "A.parquet")
    sheet = pd.DataFrame({"case_id": X.index, "center": "A", "split": "train", "label": y})
    sheet.to_csv(tmp_path / "A.tsv", sep="\t", index=False)
    (tmp_path / "robust.txt").write_text("ALL\n")
    return [str(tmp_path / "A.parquet")], [str(tmp_path / "A.tsv")]


def _cfg(models: dict) -> dict:
    return rc.with_defaults(
        {
            "seed": 1,
            "cohort": {"sheet": "t.csv", "features_table": "t.csv"},
            "endpoints": {"rec": {"type": "binary", "column": "label"}},
            "models": {"rec": models},
        }
    )


def test_fit_model_writes_the_history_and_the_report_shows_the_search(tmp_path):
    from radstudy import stages
    from radstudy.report import model_section, search_section

    tables, sheets = _files(tmp_path)
    cfg = _cfg({"auto": {"groups": ["radiomics"], "search": {"n_trials": 4, "n_estimators": 20}}})
    out = {k: str(tmp_path / f"auto.{k}") for k in ("joblib", "json", "tsv", "parquet")}
    stages.fit_model(
        tables, sheets, str(tmp_path / "robust.txt"), "rec", "auto", cfg,
        out["joblib"], out["json"], out["tsv"], out["parquet"],
    )  # fmt: skip
    hist = pd.read_parquet(out["parquet"])
    assert list(hist.columns) == ["trial", "value", "params", "state"]
    assert hist["trial"].tolist() == [0, 1, 2, 3]
    card = json.loads((tmp_path / "auto.json").read_text())
    assert card["search"]["n_trials"] == 4 and card["search"]["metric"] == "inner-CV AUC"
    assert card["search"]["pipeline"] == rs.describe(card["search"]["best_params"])
    sel = pd.read_csv(out["tsv"], sep="\t")
    assert len(sel) and set(sel["feature"]) <= {f"T2__f{i:02d}" for i in range(12)}
    html = search_section(card, hist)
    assert "Chosen pipeline" in html and "<img" in html
    assert card["search"]["pipeline"].split(" -> ")[0] in html
    metrics = pd.DataFrame(columns=["cohort", "metric", "value", "ci_low", "ci_high"])
    curves = pd.DataFrame(columns=["kind", "cohort", "series", "x", "y"])
    assert "Chosen pipeline" in model_section("rec", "auto", card, metrics, curves, sel, hist)
    # same config, same bytes (history and model)
    again = {k: str(tmp_path / f"again.{k}") for k in ("joblib", "json", "tsv", "parquet")}
    stages.fit_model(
        tables, sheets, str(tmp_path / "robust.txt"), "rec", "auto", cfg,
        again["joblib"], again["json"], again["tsv"], again["parquet"],
    )  # fmt: skip
    for k in ("joblib", "parquet", "json"):
        assert (tmp_path / f"auto.{k}").read_bytes() == (tmp_path / f"again.{k}").read_bytes(), k


def test_a_fixed_model_writes_an_empty_history_and_no_search_section(tmp_path):
    from radstudy import stages
    from radstudy.report import search_section

    tables, sheets = _files(tmp_path)
    cfg = _cfg({"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}})
    stages.fit_model(
        tables, sheets, str(tmp_path / "robust.txt"), "rec", "lr", cfg,
        str(tmp_path / "m.joblib"), str(tmp_path / "c.json"), str(tmp_path / "s.tsv"),
        str(tmp_path / "h.parquet"),
    )  # fmt: skip
    hist = pd.read_parquet(tmp_path / "h.parquet")
    assert len(hist) == 0 and list(hist.columns) == ["trial", "value", "params", "state"]
    card = json.loads((tmp_path / "c.json").read_text())
    assert "search" not in card and search_section(card, hist) == ""


def test_a_searched_survival_model_runs_through_the_stages(tmp_path):
    """fit, nested CV (+ leave-one-center-out), predictions with S(t), evaluation."""
    from radstudy import stages

    from .test_stages import _survival_files

    search = {
        "n_trials": 3,
        "n_estimators": 20,
        "survival_models": ["cox", "random_survival_forest"],
    }
    cfg = rc.with_defaults(
        {
            "seed": 1,
            "cohort": {"sheet": "t.csv", "features_table": "t.csv"},
            "endpoints": {"efs": {"type": "survival", "time": "efs_time", "event": "efs_event"}},
            "models": {"efs": {"auto": {"groups": ["radiomics", "clinical"], "search": search}}},
            "evaluation": {"cv": {"n_splits": 3, "n_repeats": 1}, "bootstrap": 100},
        }
    )
    tables, sheets = _survival_files(tmp_path)
    (tmp_path / "robust.txt").write_text("ALL\n")
    args = (tables[:2], sheets[:2], str(tmp_path / "robust.txt"), "efs", "auto", cfg)
    files = [str(tmp_path / f) for f in ("m.joblib", "card.json", "sel.tsv", "h.parquet")]
    stages.fit_model(*args, *files)
    stages.cross_validate_model(*args, str(tmp_path / "cv.tsv"))
    preds = []
    for t, s, c in zip(tables, sheets, "ABZ", strict=True):
        preds.append(str(tmp_path / f"pred_{c}.tsv"))
        stages.predict_center(files[0], files[1], t, s, "efs", cfg, preds[-1])
    metrics, curves = str(tmp_path / "metrics.tsv"), str(tmp_path / "curves.parquet")
    stages.evaluate_model(str(tmp_path / "cv.tsv"), files[1], preds, "efs", cfg, metrics, curves)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["search"]["metric"] == "inner-CV C-index" and "nomogram" not in card
    assert len(pd.read_parquet(files[3])) == 3
    cv = pd.read_csv(tmp_path / "cv.tsv", sep="\t")
    assert {"cv", "loco", "loco:A", "loco:B"} <= set(cv["cohort"])
    s_cols = [c for c in cv.columns if c.startswith("S_")]
    assert len(s_cols) == 25 and cv[s_cols].notna().all().all()
    m = pd.read_csv(metrics, sep="\t").set_index(["cohort", "metric"])["value"]
    assert m["cv", "c_index"] > 0.6 and m["external:Z", "c_index"] > 0.6
    assert 0 < m["cv", "ibs"] < 0.25


# ------------------------------------------------------------- outer folds, null check
def test_outer_folds_in_parallel_give_the_same_predictions_and_log_lines(caplog):
    """Outer folds on two worker processes: same predictions as one after the other,
    and each fold's search progress lines still reach the job log, in fold order."""
    X, y = _binary(n=48, p=10)
    pipe = Pipeline([("model", rs.ModelSearch(**FAST, random_state=3))])
    with caplog.at_level(logging.INFO):
        one = cross_validated_predictions(pipe, X, y, n_splits=3, random_state=0)
        caplog.clear()
        two = cross_validated_predictions(pipe, X, y, n_splits=3, random_state=0, n_jobs=2)
    pd.testing.assert_frame_equal(one, two)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("search: best inner AUC") for m in lines) == 3
    assert [m for m in lines if "outer fold" in m] == [
        f"CV: outer fold {i}/3 done" for i in (1, 2, 3)
    ]


def test_fixed_params_refit_exactly_the_given_configurations(caplog):
    X, y = _binary(n=60, p=20)
    found = rs.ModelSearch(**FAST, random_state=2).fit(X, y)
    with caplog.at_level(logging.INFO):
        again = rs.ModelSearch(**FAST, random_state=2, fixed_params=found.member_params_)
        again.fit(X, y)
    assert any(
        r.getMessage().startswith("fixed configurations (no search):") for r in caplog.records
    )
    assert again.member_params_ == found.member_params_
    assert again.member_configs_ == found.member_configs_
    assert len(again.history_) == len(found.member_params_)  # no trial of its own
    np.testing.assert_allclose(again.predict_proba(X), found.predict_proba(X))


def test_a_searched_models_null_check_refits_the_chosen_configurations(tmp_path, monkeypatch):
    """cv_shuffled of a searched model: the configurations model.joblib chose, refit on
    shuffled labels per fold (no search on noise); cv: a nested search per fold."""
    from radstudy import stages

    tables, sheets = _files(tmp_path)
    cfg = _cfg({"auto": {"groups": ["radiomics"], "search": {"n_trials": 4, "n_estimators": 20}}})
    cfg["evaluation"]["cv"] = {**cfg["evaluation"]["cv"], "n_splits": 3, "n_repeats": 1}
    files = [str(tmp_path / f) for f in ("m.joblib", "c.json", "s.tsv", "h.parquet")]
    args = (tables, sheets, str(tmp_path / "robust.txt"), "rec", "auto", cfg)
    stages.fit_model(*args, *files)
    chosen = __import__("joblib").load(files[0]).steps[-1][1].member_params_
    fits = []
    real_fit = rs.ModelSearch.fit

    def noting_fit(self, X, y):
        fits.append(self.fixed_params)
        return real_fit(self, X, y)

    monkeypatch.setattr(rs.ModelSearch, "fit", noting_fit)
    stages.cross_validate_model(*args, str(tmp_path / "cv.tsv"), fitted_model=files[0])
    assert fits[:3] == [None] * 3  # the nested CV: a search in each outer fold
    assert fits[3:] == [chosen] * 3  # the null check: the chosen configurations
    cv = pd.read_csv(tmp_path / "cv.tsv", sep="\t")
    assert set(cv["cohort"]) >= {"cv", "cv_shuffled"}
    with pytest.raises(ValueError, match="fitted model"):
        stages.cross_validate_model(*args, str(tmp_path / "cv2.tsv"))
