"""Reproducibility of features across readers: ICC per feature and an ICC filter.

The ICC used is ICC(A,1) in McGraw & Wong's terms = ICC(2,1) in Shrout &
Fleiss' (two-way random effects, absolute agreement, single rater); pingouin
0.7 labels it ``ICC(A,1)``. It is computed here from the two-way ANOVA mean
squares for all features at once (numpy), because calling
``pingouin.intraclass_corr`` once per feature takes minutes for thousands of
features; the unit tests check the values against pingouin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

CATEGORIES = ((0.5, "poor"), (0.75, "moderate"), (0.9, "good"), (np.inf, "excellent"))


def category(icc: float) -> str:
    """poor < 0.5 <= moderate < 0.75 <= good < 0.9 <= excellent (Koo & Li 2016)."""
    if not np.isfinite(icc):
        return "undefined"
    for upper, name in CATEGORIES:
        if icc < upper:
            return name
    return "excellent"


def icc_a1(cube: np.ndarray) -> np.ndarray:
    """ICC(A,1) for each feature of ``cube`` (targets x raters x features)."""
    n, k, _ = cube.shape
    grand = cube.mean(axis=(0, 1))
    row_means = cube.mean(axis=1)  # n x p
    col_means = cube.mean(axis=0)  # k x p
    ss_r = k * ((row_means - grand) ** 2).sum(axis=0)
    ss_c = n * ((col_means - grand) ** 2).sum(axis=0)
    ss_t = ((cube - grand) ** 2).sum(axis=(0, 1))
    ss_e = ss_t - ss_r - ss_c
    msr, msc = ss_r / (n - 1), ss_c / (k - 1)
    mse = ss_e / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = (msr - mse) / denom
    icc[~np.isfinite(icc) | (ss_t <= 1e-12 * np.maximum(1.0, np.abs(grand)))] = np.nan
    return icc


def icc_table(
    long: pd.DataFrame, raters: list[str], rater_col: str = "reader", target_col: str = "case_id"
) -> pd.DataFrame:
    """ICC(A,1) per feature across ``raters`` on the cases that all of them read."""
    feats = sorted(c for c in long.columns if c not in (rater_col, target_col))
    sub = long[long[rater_col].isin(raters)]
    counts = sub.groupby(target_col)[rater_col].nunique()
    complete = counts.index[counts == len(raters)]
    sub = sub[sub[target_col].isin(complete)].sort_values([target_col, rater_col])
    n = len(complete)
    if n < 3 or not feats:
        return pd.DataFrame(columns=["feature", "icc", "category", "n_cases"])
    cube = np.stack(
        [
            sub[sub[rater_col] == r].set_index(target_col).loc[complete, feats].to_numpy(float)
            for r in raters
        ],
        axis=1,
    )
    icc = icc_a1(cube)
    return pd.DataFrame(
        {"feature": feats, "icc": icc, "category": [category(v) for v in icc], "n_cases": n}
    )


def inter_intra(
    long: pd.DataFrame, readers: list[str], repeat_pairs: dict[str, str]
) -> pd.DataFrame:
    """Inter-observer ICC across ``readers`` and intra-observer ICC per repeat pair."""
    frames = []
    if len(readers) > 1:
        frames.append(icc_table(long, readers).assign(kind="inter", raters="+".join(readers)))
    for repeat, original in sorted(repeat_pairs.items()):
        t = icc_table(long, [original, repeat])
        frames.append(t.assign(kind="intra", raters=f"{original}+{repeat}"))
    if not frames:
        return pd.DataFrame(columns=["kind", "raters", "feature", "icc", "category", "n_cases"])
    out = pd.concat(frames)[["kind", "raters", "feature", "icc", "category", "n_cases"]]
    return out.sort_values(["kind", "raters", "feature"]).reset_index(drop=True)


def robust_features(icc: pd.DataFrame, threshold: float = 0.75) -> list[str]:
    """Features whose ICC reaches ``threshold`` (undefined ICC = not robust)."""
    return sorted(icc.loc[icc["icc"] >= threshold, "feature"].unique())


class ICCFilter(BaseEstimator, TransformerMixin):
    """Keep radiomics columns listed in ``keep``; other groups pass through.

    ``keep`` comes from training cases only (rule compute_icc). Columns of the
    deep and clinical groups, and the batch column, are never dropped here.
    """

    def __init__(self, keep=None):
        self.keep = keep

    def fit(self, X: pd.DataFrame, y=None):
        from radstudy.tables import column_group

        keep = set(self.keep or [])
        self.columns_ = [
            c for c in X.columns if self.keep is None or column_group(c) != "radiomics" or c in keep
        ]
        self.dropped_ = [c for c in X.columns if c not in self.columns_]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.columns_]
