"""Survival models (lifelines): Cox risk score in a Pipeline, risk groups, KM, nomogram."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator


class CoxScoreModel(BaseEstimator):
    """Cox proportional hazards on the incoming features; predict = linear predictor."""

    def __init__(self, penalizer: float = 0.1, l1_ratio: float = 0.0):
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio

    def fit(self, X: pd.DataFrame, y: pd.DataFrame):
        from lifelines import CoxPHFitter

        df = pd.DataFrame(np.asarray(X, float), columns=[f"x{i}" for i in range(X.shape[1])])
        df["time"] = y["time"].to_numpy(float)
        df["event"] = y["event"].to_numpy(int)
        self.cph_ = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio)
        self.cph_.fit(df, duration_col="time", event_col="event")
        # lifelines stamps the wall-clock time of the fit; the saved model must not
        # depend on when it was fitted (same config, same bytes)
        for fitted in (self.cph_, getattr(self.cph_, "_model", None)):
            if fitted is not None and hasattr(fitted, "_time_fit_was_called"):
                fitted._time_fit_was_called = "not recorded"
        self.coef_ = self.cph_.params_.to_numpy()
        self.columns_ = list(getattr(X, "columns", df.columns[:-2]))
        return self

    def predict(self, X) -> np.ndarray:
        """Risk score (log partial hazard, centred as lifelines does): higher = worse."""
        return np.asarray(X, float) @ self.coef_

    def survival_function(self, X, times) -> pd.DataFrame:
        df = pd.DataFrame(np.asarray(X, float), columns=[f"x{i}" for i in range(X.shape[1])])
        return self.cph_.predict_survival_function(df, times=times)


def build_survival_pipeline(spec: dict, random_state: int, pre_steps=()):
    """[pre-steps -> impute -> scale -> Cox]; selection steps get y (time/event) too."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from radstudy.models import DataFrameStep

    steps = list(pre_steps) + [
        ("impute", DataFrameStep(SimpleImputer(strategy="median"))),
        ("scale", DataFrameStep(StandardScaler())),
        (
            "model",
            CoxScoreModel(
                **{k: v for k, v in (spec or {}).items() if k in ("penalizer", "l1_ratio")}
            ),
        ),
    ]
    return Pipeline(steps)


def risk_groups(score_train, score_other, cutoff: str | float = "median"):
    """Cutoff learned on TRAINING scores only; returns (cutoff, labels for score_other)."""
    c = float(np.median(score_train)) if cutoff == "median" else float(cutoff)
    return c, np.where(np.asarray(score_other) > c, "high", "low")


def km_logrank(time, event, group) -> dict:
    """Kaplan-Meier curves per group (tidy) and the log-rank test."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    time, event, group = np.asarray(time, float), np.asarray(event, int), np.asarray(group)
    curves = []
    for g in sorted(set(group)):
        m = group == g
        kmf = KaplanMeierFitter().fit(time[m], event[m])
        sf = kmf.survival_function_
        curves.append(
            pd.DataFrame(
                {"series": g, "x": sf.index.to_numpy(float), "y": sf.iloc[:, 0].to_numpy(float)}
            )
        )
    out = {"curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()}
    if len(set(group)) > 1:
        res = multivariate_logrank_test(time, group, event)
        out.update({"statistic": float(res.test_statistic), "p": float(res.p_value)})
    else:
        out.update({"statistic": np.nan, "p": np.nan})
    return out


def multivariable_cox(
    df: pd.DataFrame, covariates: list[str], time: str, event: str
) -> pd.DataFrame:
    """Hazard ratios with 95% CI and p per covariate."""
    from lifelines import CoxPHFitter

    cph = CoxPHFitter().fit(df[covariates + [time, event]], duration_col=time, event_col=event)
    s = cph.summary
    return pd.DataFrame(
        {
            "covariate": s.index,
            "hr": s["exp(coef)"].to_numpy(),
            "ci_low": s["exp(coef) lower 95%"].to_numpy(),
            "ci_high": s["exp(coef) upper 95%"].to_numpy(),
            "p": s["p"].to_numpy(),
        }
    )


def ph_test(df: pd.DataFrame, covariates: list[str], time: str, event: str) -> pd.DataFrame:
    """Proportional-hazards test (scaled Schoenfeld residuals, rank time transform)."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    cph = CoxPHFitter().fit(df[covariates + [time, event]], duration_col=time, event_col=event)
    res = proportional_hazard_test(cph, df[covariates + [time, event]], time_transform="rank")
    s = res.summary
    return pd.DataFrame(
        {
            "covariate": [i if isinstance(i, str) else i[0] for i in s.index],
            "statistic": s["test_statistic"].to_numpy(),
            "p": s["p"].to_numpy(),
        }
    )


def nomogram(model: CoxScoreModel, X: pd.DataFrame, time_point: float, n_ticks: int = 5) -> dict:
    """Points table of a fitted Cox model over the TRAINING ranges of its inputs.

    Each covariate's contribution beta * x is mapped to points, the covariate with
    the widest contribution range spanning 0-100; total points map to the predicted
    survival probability at ``time_point`` through the baseline survival.
    """
    beta = pd.Series(model.coef_, index=list(X.columns))
    lo, hi = X.min(), X.max()
    contrib_range = (beta * (hi - lo)).abs()
    scale = 100.0 / contrib_range.max() if contrib_range.max() > 0 else 0.0
    rows = []
    for col in X.columns:
        for v in np.linspace(lo[col], hi[col], n_ticks):
            pts = (beta[col] * (v - (lo[col] if beta[col] >= 0 else hi[col]))) * scale
            rows.append({"covariate": col, "value": float(v), "points": float(pts)})
    table = pd.DataFrame(rows)
    bs = model.cph_.baseline_survival_  # at the training mean of the covariates
    base = float(bs[bs.index <= time_point].iloc[-1, 0]) if (bs.index <= time_point).any() else 1.0
    # linear predictor at zero points (every covariate at its lowest-risk end)
    lp0 = float(sum(beta[c] * (lo[c] if beta[c] >= 0 else hi[c]) for c in X.columns))
    mean_lp = float(np.asarray(model.cph_._norm_mean) @ model.coef_)
    total = np.linspace(0, float(table.groupby("covariate")["points"].max().sum()), 11)
    lp = lp0 + total / scale if scale else np.full_like(total, lp0)
    surv = base ** np.exp(lp - mean_lp)
    return {
        "points": table,
        "total": pd.DataFrame({"total_points": total, "survival": surv}),
        "time_point": float(time_point),
    }
