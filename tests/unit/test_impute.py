"""Missing values: fitted on training rows only, features with too many gaps dropped
and named, gap indicators, and the whole model chain runs on a table with gaps."""

import numpy as np
import pandas as pd
import pytest

from radstudy.config import with_defaults
from radstudy.impute import Imputation
from radstudy.models import cross_validated_predictions, fixed_folds
from radstudy.stages import build_pipeline


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "center": np.repeat(["A", "B", "C"], n // 3),
            "T2__a": rng.normal(size=n),
            "T2__b": rng.normal(size=n),
            "T2__gappy": rng.normal(size=n),
            "clinical__age": rng.normal(50, 10, size=n),
        },
        index=[f"c{i}" for i in range(n)],
    )
    y = pd.Series((X["T2__a"] + 0.5 * rng.normal(size=n) > 0).astype(int), index=X.index)
    X.loc[X.index[::7], "T2__a"] = np.nan  # 9 of 60: 15 %
    X.loc[X.index[: n // 2], "T2__gappy"] = np.nan  # 50 %
    X.loc[X.index[3], "clinical__age"] = np.nan
    return X, y


def test_fill_values_come_from_the_training_rows_only():
    X, _ = _table()
    train, test = X.iloc[:40], X.iloc[40:].copy()
    test.loc[test.index[0], "T2__b"] = np.nan
    step = Imputation(strategy="median", max_missing=0.2).fit(train)
    out = step.transform(test)
    assert out.loc[test.index[0], "T2__b"] == pytest.approx(train["T2__b"].median())
    # a test row's value never moves the fill value
    test.loc[test.index[1:], "T2__b"] = 1e6
    assert step.transform(test).loc[test.index[0], "T2__b"] == pytest.approx(
        train["T2__b"].median()
    )
    assert "center" in out.columns and out["center"].equals(test["center"])
    assert not out.drop(columns="center").isna().any().any()


def test_features_missing_too_often_are_dropped_and_named():
    X, _ = _table()
    step = Imputation(max_missing=0.2).fit(X)
    assert list(step.dropped_) == ["T2__gappy"]
    assert "50%" in step.dropped_["T2__gappy"]
    assert "T2__gappy" not in step.transform(X).columns
    # the counts per group the report shows: 9 radiomics values, 1 clinical
    assert step.summary()["imputed_values"] == {"clinical": 1, "radiomics": 9}
    keep = Imputation(max_missing=0.6).fit(X)
    assert keep.dropped_ == {} and "T2__gappy" in keep.transform(X).columns


def test_indicators_and_knn():
    X, _ = _table()
    step = Imputation(strategy="knn", indicator=True, max_missing=0.6).fit(X)
    out = step.transform(X)
    assert out["missing__T2__a"].sum() == 9 and out["missing__T2__gappy"].sum() == 30
    assert not out.drop(columns="center").isna().any().any()


def test_the_whole_chain_runs_on_a_table_with_gaps():
    X, y = _table()
    cfg = with_defaults(
        {
            "cohort": {"sheet": "s.csv", "features_table": "s.csv"},
            "endpoints": {"y": {"type": "binary", "column": "y"}},
            "models": {"y": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}},
        }
    )
    cfg["imputation"]["indicator"] = True
    spec, ep = cfg["models"]["y"]["lr"], cfg["endpoints"]["y"]
    pipe = build_pipeline(spec, cfg, ep, None, seed=0).fit(X, y)
    assert pipe.named_steps["impute_missing"].dropped_ == {"T2__gappy": pytest.approx(
        pipe.named_steps["impute_missing"].dropped_["T2__gappy"])}  # fmt: skip
    pred = cross_validated_predictions(pipe, X, y, n_splits=3, random_state=0)
    assert pred["y_prob"].notna().all() and len(pred) == len(X)


def test_fixed_folds_reproduce_a_published_split():
    X, y = _table()
    X = X.drop(columns=["T2__gappy"]).fillna(0.0)
    folds = pd.Series(np.tile(["f1", "f2", "f10"], 20), index=X.index)
    splits = fixed_folds(folds)
    assert [sorted(X.index[te]) == sorted(folds.index[folds == f]) for (_, te), f in
            zip(splits, ["f1", "f2", "f10"], strict=True)] == [True, True, True]  # fmt: skip
    cfg = with_defaults(
        {
            "cohort": {"sheet": "s.csv", "features_table": "s.csv"},
            "endpoints": {"y": {"type": "binary", "column": "y"}},
            "models": {"y": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}},
        }
    )
    pipe = build_pipeline(cfg["models"]["y"]["lr"], cfg, cfg["endpoints"]["y"], None, seed=0)
    pred = cross_validated_predictions(pipe, X, y, n_splits=5, n_repeats=3, folds=folds)
    # one repeat, each case held out once, in the fold its label names
    assert len(pred) == len(X) and set(pred["repeat"]) == {0}
    by_fold = pred.groupby("fold")["case_id"].apply(set)
    assert by_fold[0] == set(folds.index[folds == "f1"])
    assert by_fold[2] == set(folds.index[folds == "f10"])
