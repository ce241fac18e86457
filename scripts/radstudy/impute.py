"""Missing feature values: drop features with too many gaps, impute the rest.

One pipeline step, so it is fitted on the training rows of every fit (each CV fold,
each leave-one-center-out fit) and applied unchanged to held-out rows. It runs
right after the feature groups are chosen and before harmonisation (ComBat cannot
take gaps). scikit-learn's SimpleImputer / KNNImputer do the filling; this step adds
what they lack for a study: the share-of-training-rows rule for dropping a feature
(SimpleImputer only drops columns that are entirely missing), names and reasons for
what was dropped, per-group counts of imputed values for the report, and DataFrame
columns in and out.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from radstudy.tables import column_group

log = logging.getLogger(__name__)

INDICATOR = "missing__"


class Imputation(BaseEstimator, TransformerMixin):
    """Drop features missing in more than ``max_missing`` of the training rows; fill
    the other gaps with ``strategy`` (median, mean, most_frequent, knn); optionally add
    a 0/1 column ``missing__{feature}`` per feature with gaps in the training rows.

    Non-numeric columns and ``keep_cols`` (e.g. the center) pass through untouched.
    Fitted: ``features_`` (imputed columns), ``dropped_`` (feature -> reason),
    ``indicators_`` (features that got an indicator), ``imputed_`` (group -> values
    filled in the training rows), ``fill_`` (feature -> value; not for knn).
    """

    def __init__(self, strategy="median", max_missing=0.2, indicator=False, keep_cols=("center",)):
        self.strategy = strategy
        self.max_missing = max_missing
        self.indicator = indicator
        self.keep_cols = keep_cols

    def _numeric(self, X: pd.DataFrame) -> list[str]:
        return [
            c
            for c in X.columns
            if c not in self.keep_cols and pd.api.types.is_numeric_dtype(X.dtypes[c])
        ]

    def fit(self, X: pd.DataFrame, y=None):
        cols = self._numeric(X)
        share = X[cols].isna().mean() if len(X) else pd.Series(0.0, index=cols)
        self.dropped_ = {
            c: f"missing in {share[c]:.0%} of the training rows (> {self.max_missing:.0%})"
            for c in cols
            if share[c] > self.max_missing
        }
        self.features_ = [c for c in cols if c not in self.dropped_]
        gaps = X[self.features_].isna()
        self.indicators_ = [c for c in self.features_ if gaps[c].any()] if self.indicator else []
        counts: dict[str, int] = {}
        for c in self.features_:
            n = int(gaps[c].sum())
            if n:
                g = column_group(c)
                counts[g] = counts.get(g, 0) + n
        self.imputed_ = dict(sorted(counts.items()))
        if self.dropped_:
            shown = ", ".join(sorted(self.dropped_)[:5])
            log.warning(
                "%d feature(s) missing in more than %.0f%% of the training rows dropped: %s%s",
                len(self.dropped_),
                100 * self.max_missing,
                shown,
                " ..." if len(self.dropped_) > 5 else "",
            )
        if self.strategy == "knn":
            from sklearn.impute import KNNImputer

            self.imputer_ = KNNImputer(n_neighbors=5).fit(X[self.features_].to_numpy(float))
            self.fill_ = None
        else:
            F = X[self.features_]
            if self.strategy == "median":
                fill = F.median()
            elif self.strategy == "mean":
                fill = F.mean()
            elif self.strategy == "most_frequent":
                # the smallest of the most frequent values (as SimpleImputer), per column
                fill = F.apply(lambda s: s.mode().min() if s.notna().any() else np.nan)
            else:
                raise ValueError(f"unknown imputation strategy {self.strategy!r}")
            self.fill_ = fill.fillna(0.0).astype(float)
            self.imputer_ = None
        self.columns_out_ = [
            *[c for c in X.columns if c not in self.dropped_],
            *(INDICATOR + c for c in self.indicators_),
        ]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.drop(columns=[c for c in self.dropped_ if c in X.columns])
        gaps = X[self.features_].isna()
        if gaps.to_numpy().any():
            if self.imputer_ is not None:
                filled = self.imputer_.transform(X[self.features_].to_numpy(float))
                out[self.features_] = pd.DataFrame(
                    filled, index=X.index, columns=self.features_
                ).astype(float)
            else:
                out[self.features_] = X[self.features_].fillna(self.fill_)
        for c in self.indicators_:
            out[INDICATOR + c] = gaps[c].astype(float)
        return out[self.columns_out_]

    def summary(self) -> dict:
        """For the model card: what was dropped and how much was filled in."""
        return {
            "strategy": self.strategy,
            "max_missing": self.max_missing,
            "dropped": dict(sorted(self.dropped_.items())),
            "imputed_values": self.imputed_,
            "indicators": list(self.indicators_),
        }


def imputation_from_cfg(icfg: dict) -> Imputation:
    """The step from the config's ``imputation`` block."""
    return Imputation(
        strategy=icfg["strategy"], max_missing=icfg["max_missing"], indicator=icfg["indicator"]
    )
