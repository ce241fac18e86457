"""Feature selection steps as scikit-learn transformers (DataFrame in, DataFrame out).

Each selector decides on the radiomics/deep columns only; ``clinical__`` columns
and any non-numeric meta column pass through unless ``include_clinical`` is
set. Fitted selectors expose ``selected_`` and ``reasons_`` (feature -> why it
was dropped) for results/selection/. Inside a Pipeline they are refit in
every CV fold, so selection never sees held-out rows.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin

log = logging.getLogger(__name__)


def _is_candidate(col: str, include_clinical: bool) -> bool:
    return include_clinical or not str(col).startswith("clinical__")


def _binary_y(y) -> np.ndarray:
    if isinstance(y, pd.DataFrame):  # survival: event indicator stands in for univariate tests
        return y["event"].to_numpy(int)
    return np.asarray(y).astype(int)


class _Selector(BaseEstimator, TransformerMixin):
    include_clinical = False

    def _candidates(self, X: pd.DataFrame) -> list[str]:
        return [
            c
            for c in X.columns
            if _is_candidate(c, self.include_clinical) and pd.api.types.is_numeric_dtype(X[c])
        ]

    def _finish(self, X: pd.DataFrame, keep: list[str], reasons: dict[str, str]):
        cand = set(self._candidates(X))
        self.selected_ = [c for c in X.columns if c in keep]
        self.columns_ = [c for c in X.columns if c not in cand or c in keep]
        self.reasons_ = dict(sorted(reasons.items()))
        if not [c for c in self.selected_]:
            log.warning("%s kept no feature", type(self).__name__)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.columns_]


class VarianceFilter(_Selector):
    """Drop (near-)constant features and features with missing values in training."""

    def __init__(self, threshold: float = 1e-8):
        self.threshold = threshold

    def fit(self, X, y=None):
        cand = self._candidates(X)
        var = X[cand].var()
        bad_na = X[cand].isna().any()
        keep = [c for c in cand if var[c] > self.threshold and not bad_na[c]]
        reasons = {
            c: "missing values" if bad_na[c] else "near-constant" for c in cand if c not in keep
        }
        return self._finish(X, keep, reasons)


class UnivariateSelector(_Selector):
    """t-test or Mann-Whitney U per feature; optional Benjamini-Hochberg FDR."""

    def __init__(
        self,
        test: str = "mannwhitney",
        alpha: float = 0.05,
        fdr: bool = True,
        max_features: int | None = None,
        min_features: int = 1,
    ):
        self.test = test
        self.alpha = alpha
        self.fdr = fdr
        self.max_features = max_features
        self.min_features = min_features

    def fit(self, X, y):
        from statsmodels.stats.multitest import multipletests

        cand = self._candidates(X)
        yb = _binary_y(y)
        A, B = X.loc[yb == 1, cand].to_numpy(float), X.loc[yb == 0, cand].to_numpy(float)
        if self.test == "ttest":
            p = stats.ttest_ind(A, B, equal_var=False, axis=0).pvalue
        else:
            p = stats.mannwhitneyu(A, B, axis=0).pvalue
        p = np.nan_to_num(p, nan=1.0)
        q = multipletests(p, method="fdr_bh")[1] if self.fdr and len(p) else p
        self.pvalues_ = pd.Series(q, index=cand)
        order = np.lexsort((np.array(cand), q))  # by q, ties by name: deterministic
        ranked = [cand[i] for i in order]
        keep = [c for c in ranked if self.pvalues_[c] < self.alpha]
        if len(keep) < self.min_features:
            keep = ranked[: self.min_features]
        if self.max_features:
            keep = keep[: self.max_features]
        reasons = {
            c: f"univariate {'q' if self.fdr else 'p'}={self.pvalues_[c]:.3g}"
            for c in cand
            if c not in keep
        }
        return self._finish(X, keep, reasons)


class CorrelationPruner(_Selector):
    """Of each pair with |rho| above ``threshold``, drop the less relevant feature.

    Relevance = |AUC - 0.5| of the feature alone against the outcome (binary),
    or variance rank when no outcome is given; ties broken by name.
    """

    def __init__(self, threshold: float = 0.9, method: str = "spearman"):
        self.threshold = threshold
        self.method = method

    def fit(self, X, y=None):
        from sklearn.metrics import roc_auc_score

        cand = self._candidates(X)
        if not cand:
            return self._finish(X, [], {})
        if y is not None and len(np.unique(_binary_y(y))) == 2:
            yb = _binary_y(y)
            rel = {c: abs(roc_auc_score(yb, X[c].to_numpy(float)) - 0.5) for c in cand}
        else:
            rel = X[cand].var().to_dict()
        order = sorted(cand, key=lambda c: (-rel[c], c))
        corr = X[order].corr(method=self.method).abs().to_numpy()
        keep_idx, reasons = [], {}
        for i, c in enumerate(order):
            hit = next((j for j in keep_idx if corr[i, j] > self.threshold), None)
            if hit is None:
                keep_idx.append(i)
            else:
                reasons[c] = f"|{self.method} rho|={corr[i, hit]:.3f} with {order[hit]}"
        return self._finish(X, [order[i] for i in keep_idx], reasons)


class LassoSelector(_Selector):
    """L1 logistic regression, C by stratified CV; keeps non-zero coefficients.

    Stores the coefficient path (``path_``: C x feature) and the CV error
    (``cv_error_``: C, mean and sd of the log-loss) for the report's plots.
    """

    def __init__(
        self,
        cv: int = 5,
        random_state: int = 0,
        max_features: int | None = None,
        Cs: int = 20,
        include_clinical: bool = False,
    ):
        self.cv = cv
        self.random_state = random_state
        self.max_features = max_features
        self.Cs = Cs
        self.include_clinical = include_clinical

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        cand = self._candidates(X)
        yb = _binary_y(y)
        Z = X[cand].to_numpy(float)
        Z = (Z - Z.mean(0)) / (Z.std(0) + 1e-12)
        n_splits = int(max(2, min(self.cv, np.bincount(yb).min())))
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        Cs = np.logspace(-2.5, 1.5, self.Cs)
        # liblinear shuffles coordinates: without a seed its results vary in the 6th digit
        model = LogisticRegressionCV(
            random_state=self.random_state,
            Cs=Cs,
            cv=cv,
            l1_ratios=(1.0,),
            solver="liblinear",
            scoring="neg_log_loss",
            max_iter=5000,
            use_legacy_attributes=True,
        )
        model.fit(Z, yb)
        scores = -np.asarray(model.scores_[1]).reshape(n_splits, -1)
        self.cv_error_ = pd.DataFrame({"C": Cs, "mean": scores.mean(0), "sd": scores.std(0)})
        path = []
        for C in Cs:
            m = LogisticRegression(
                C=C,
                l1_ratio=1.0,
                solver="liblinear",
                max_iter=5000,
                random_state=self.random_state,
            ).fit(Z, yb)
            path.append(m.coef_.ravel())
        self.path_ = pd.DataFrame(path, index=pd.Index(Cs, name="C"), columns=cand)
        coef = pd.Series(model.coef_.ravel(), index=cand)
        nz = coef[coef != 0]
        if nz.empty:  # the CV optimum kept nothing: take the first features to enter the path
            first = self.path_.ne(0).idxmax().where(self.path_.ne(0).any())
            nz = pd.Series(1.0, index=sorted(first.dropna().index, key=lambda c: first[c])[:1])
        ranked = sorted(nz.index, key=lambda c: (-abs(nz[c]), c))
        keep = ranked[: self.max_features] if self.max_features else ranked
        self.coef_ = coef
        reasons = {
            c: "LASSO coefficient 0" if coef[c] == 0 else "beyond max_features"
            for c in cand
            if c not in keep
        }
        return self._finish(X, keep, reasons)


class MRMRSelector(_Selector):
    """mRMR (mrmr-selection's mrmr_classif): the k most relevant, least redundant."""

    def __init__(self, k: int = 10, include_clinical: bool = True):
        self.k = k
        self.include_clinical = include_clinical

    def fit(self, X, y):
        from mrmr import mrmr_classif

        cand = self._candidates(X)
        yb = pd.Series(_binary_y(y), index=X.index)
        keep = list(mrmr_classif(X=X[cand], y=yb, K=min(self.k, len(cand)), show_progress=False))
        reasons = {c: "not among mRMR top k" for c in cand if c not in keep}
        return self._finish(X, keep, reasons)


class ConcordanceSelector(_Selector):
    """Survival: keep the k features whose univariate C-index is farthest from 0.5."""

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y):
        from lifelines.utils import concordance_index

        cand = self._candidates(X)
        t, e = y["time"].to_numpy(float), y["event"].to_numpy(int)
        score = {c: abs(concordance_index(t, -X[c].to_numpy(float), e) - 0.5) for c in cand}
        self.scores_ = pd.Series(score)
        keep = sorted(cand, key=lambda c: (-score[c], c))[: self.k]
        reasons = {
            c: f"|C-index - 0.5|={score[c]:.3f} not in top {self.k}" for c in cand if c not in keep
        }
        return self._finish(X, keep, reasons)


STEPS = {
    "concordance": ConcordanceSelector,
    "variance": VarianceFilter,
    "univariate": UnivariateSelector,
    "correlation": CorrelationPruner,
    "lasso": LassoSelector,
    "mrmr": MRMRSelector,
}
SEEDED = {"lasso"}


def build_selector(spec: dict, random_state: int = 0) -> list[tuple[str, BaseEstimator]]:
    """Pipeline steps from a config block like {variance: {}, lasso: {cv: 5}} (in order)."""
    steps = []
    for name, params in (spec or {}).items():
        if name not in STEPS:
            raise ValueError(f"unknown selection step {name!r}; choose from {sorted(STEPS)}")
        kwargs = dict(params or {})
        if name in SEEDED:
            kwargs.setdefault("random_state", random_state)
        steps.append((name, STEPS[name](**kwargs)))
    return steps
