"""Feature selection steps as scikit-learn transformers (DataFrame in, DataFrame out).

Each selector decides on the radiomics/deep columns only; ``clinical__`` columns
and any non-numeric meta column pass through unless ``include_clinical`` is
set. Fitted selectors expose ``selected_`` (kept candidates, in column order),
``reasons_`` (Series: candidate feature -> why it was kept or dropped) and, where
meaningful, ``scores_``; ``report()`` gives the same as a table for
results/selection/. Inside a Pipeline they are refit in every CV fold, so
selection never sees held-out rows.

y is a 0/1 Series (binary endpoint) or a DataFrame with ``time``/``event``
(survival); univariate filters of a survival endpoint use the event indicator.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin

log = logging.getLogger(__name__)

# config section `selection`: ordered steps -> parameters (see build_selector)
DEFAULTS: dict = {
    "variance": {"threshold": 1e-8},
    "univariate": {"test": "mannwhitney", "alpha": 0.1, "fdr": False},
    "correlation": {"threshold": 0.9, "method": "spearman"},
    "lasso": {"cv": 5, "max_features": 10},
}
COX_PENALIZERS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _is_candidate(col: str, include_clinical: bool) -> bool:
    return include_clinical or not str(col).startswith("clinical__")


def _binary_y(y) -> np.ndarray:
    if isinstance(y, pd.DataFrame):  # survival: event indicator stands in for univariate tests
        return y["event"].to_numpy(int)
    return np.asarray(y).astype(int)


def _sorted(X: pd.DataFrame, y):
    """Rows sorted by case id (y aligned) so CV folds, and so the result, ignore row order."""
    order = np.argsort(np.asarray(X.index.astype(str)), kind="stable")
    Xs = X.iloc[order]
    if y is None:
        return Xs, None
    if isinstance(y, pd.Series | pd.DataFrame):
        return Xs, y.iloc[order] if y.index.equals(X.index) else y.loc[Xs.index]
    return Xs, np.asarray(y)[order]


def _standardize(Z: np.ndarray) -> np.ndarray:
    return (Z - Z.mean(0)) / (Z.std(0) + 1e-12)


class _Selector(BaseEstimator, TransformerMixin):
    include_clinical = False

    def _candidates(self, X: pd.DataFrame) -> list[str]:
        dtypes = X.dtypes  # one lookup, not a column Series per feature
        return [
            c
            for c in X.columns
            if _is_candidate(c, self.include_clinical) and pd.api.types.is_numeric_dtype(dtypes[c])
        ]

    def _finish(
        self,
        X: pd.DataFrame,
        keep: Sequence[str],
        reasons: dict[str, str],
        kept: dict[str, str] | None = None,
    ):
        """Record the decision: ``reasons`` for dropped features, ``kept`` for kept ones."""
        cand = self._candidates(X)
        keep_set, cand_set = set(keep), set(cand)
        self.selected_ = [c for c in X.columns if c in keep_set]
        self.columns_ = [c for c in X.columns if c not in cand_set or c in keep_set]
        kept = kept or {}
        why = {c: kept.get(c, "kept") if c in keep_set else reasons.get(c, "dropped") for c in cand}
        self.reasons_ = pd.Series(why, dtype=object).sort_index()
        self.n_features_in_ = X.shape[1]
        if not self.selected_ and cand:
            log.warning("%s kept no feature", type(self).__name__)
        return self

    def report(self) -> pd.DataFrame:
        """feature, step, kept, reason, score (when the step scores features); sorted."""
        df = pd.DataFrame({"feature": self.reasons_.index, "reason": self.reasons_.to_numpy()})
        df.insert(1, "step", type(self).__name__)
        df.insert(2, "kept", df["feature"].isin(self.selected_))
        scores = getattr(self, "scores_", None)
        df["score"] = df["feature"].map(scores) if scores is not None else np.nan
        return df.sort_values("feature").reset_index(drop=True)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.columns_]


class VarianceFilter(_Selector):
    """Drop (near-)constant features and features with missing values in training."""

    def __init__(self, threshold: float = 1e-8, include_clinical: bool = False):
        self.threshold = threshold
        self.include_clinical = include_clinical

    def fit(self, X, y=None):
        X, y = _sorted(X, y)
        cand = self._candidates(X)
        var = X[cand].var()
        bad_na = X[cand].isna().any()
        keep = [c for c in cand if var[c] > self.threshold and not bad_na[c]]
        reasons = {
            c: "missing values" if bad_na[c] else "near-constant" for c in cand if c not in keep
        }
        self.scores_ = var
        return self._finish(X, keep, reasons, {c: f"variance {var[c]:.3g}" for c in keep})


class UnivariateSelector(_Selector):
    """Welch t-test or Mann-Whitney U per feature; optional Benjamini-Hochberg FDR.

    ``scores_`` holds the (FDR-adjusted when ``fdr``) p-values. At least
    ``min_features`` are kept (the smallest p-values) so a later step has input.
    """

    def __init__(
        self,
        test: str = "mannwhitney",
        alpha: float = 0.05,
        fdr: bool = True,
        max_features: int | None = None,
        min_features: int = 1,
        include_clinical: bool = False,
    ):
        self.test = test
        self.alpha = alpha
        self.fdr = fdr
        self.max_features = max_features
        self.min_features = min_features
        self.include_clinical = include_clinical

    def fit(self, X, y):
        from statsmodels.stats.multitest import multipletests

        X, y = _sorted(X, y)
        if self.test not in ("ttest", "mannwhitney"):
            raise ValueError(f"univariate test {self.test!r}: choose ttest or mannwhitney")
        cand = self._candidates(X)
        yb = _binary_y(y)
        A, B = X.loc[yb == 1, cand].to_numpy(float), X.loc[yb == 0, cand].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant features: p = NaN
            if self.test == "ttest":
                p = stats.ttest_ind(A, B, equal_var=False, axis=0, nan_policy="omit").pvalue
            else:
                p = stats.mannwhitneyu(A, B, axis=0, nan_policy="omit").pvalue
        p = np.nan_to_num(np.asarray(p, float), nan=1.0)
        q = multipletests(p, method="fdr_bh")[1] if self.fdr and len(p) else p
        self.pvalues_ = self.scores_ = pd.Series(q, index=cand)
        order = np.lexsort((np.array(cand), q))  # by q, ties by name: deterministic
        ranked = [cand[i] for i in order]
        keep = [c for c in ranked if self.pvalues_[c] < self.alpha]
        if len(keep) < self.min_features:
            keep = ranked[: self.min_features]
        if self.max_features:
            keep = keep[: self.max_features]
        label = "q" if self.fdr else "p"
        reasons = {c: f"univariate {label}={q_:.3g}" for c, q_ in self.pvalues_.items()}
        return self._finish(X, keep, reasons, reasons)


def column_auc(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of every column of ``F`` against binary ``y`` at once.

    The Mann-Whitney form, AUC = (R1 - n1 (n1 + 1) / 2) / (n1 n0) with R1 the sum of the
    positives' mid-ranks: the same value as sklearn's ``roc_auc_score`` (ties count
    1/2), which takes one call per feature (most of a selection's time on thousands).
    """
    from scipy.stats import rankdata

    pos = np.asarray(y) == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(F, axis=0)
    return (ranks[pos].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


class CorrelationPruner(_Selector):
    """Of each pair with |rho| above ``threshold``, drop the less relevant feature.

    Relevance (``scores_``) = |AUC - 0.5| of the feature alone against the outcome
    (binary, or the event of a survival outcome), or the variance when no outcome is
    given; ties broken by name. Greedy: features are visited by relevance and kept
    unless too correlated with one already kept.
    """

    def __init__(
        self, threshold: float = 0.9, method: str = "spearman", include_clinical: bool = False
    ):
        self.threshold = threshold
        self.method = method
        self.include_clinical = include_clinical

    def fit(self, X, y=None):
        X, y = _sorted(X, y)
        cand = self._candidates(X)
        if not cand:
            return self._finish(X, [], {})
        if y is not None and len(np.unique(_binary_y(y))) == 2:
            F = X[cand]
            auc = column_auc(F.fillna(F.median()).to_numpy(float), _binary_y(y))
            rel = dict(zip(cand, np.abs(auc - 0.5).tolist(), strict=True))
        else:
            rel = X[cand].var().to_dict()
        self.scores_ = pd.Series(rel)
        order = sorted(cand, key=lambda c: (-rel[c], c))
        corr = X[order].corr(method=self.method).abs().fillna(0.0).to_numpy()
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

    Stores the coefficient path (``path_``: C x feature, standardised features) and
    the CV error (``cv_error_``: C, mean and sd over folds of the held-out log-loss)
    for the report's plots; ``C_`` is the chosen C, ``coef_``/``scores_`` the
    coefficients there. ``Cs``: number of C values on a log grid from 10^-2.5 to
    10^1.5, or the values themselves. A survival y (time/event DataFrame) runs the
    Cox LASSO (:class:`CoxLassoSelector`) with the same ``cv`` and ``max_features``.
    """

    def __init__(
        self,
        cv: int = 5,
        random_state: int = 0,
        max_features: int | None = None,
        Cs: int | Sequence[float] = 20,
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

        X, y = _sorted(X, y)
        if isinstance(y, pd.DataFrame):
            cox = CoxLassoSelector(
                cv=self.cv,
                random_state=self.random_state,
                max_features=self.max_features,
                include_clinical=self.include_clinical,
            ).fit(X, y)
            self.__dict__.update({k: v for k, v in vars(cox).items() if k.endswith("_")})
            return self
        cand = self._candidates(X)
        yb = _binary_y(y)
        Z = _standardize(X[cand].to_numpy(float))
        n_splits = int(max(2, min(self.cv, np.bincount(yb).min())))
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        if np.ndim(self.Cs) == 0:
            Cs = np.logspace(-2.5, 1.5, int(self.Cs))
        else:
            Cs = np.sort(np.asarray(self.Cs, float))
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
        self.C_ = float(np.ravel(model.C_)[0])
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
        keep = _keep_from_path(coef, self.path_, self.max_features)
        self.coef_ = self.scores_ = coef
        return self._finish(X, keep, _path_reasons(coef, keep), _coef_reasons(coef, keep))


def _keep_from_path(coef: pd.Series, path: pd.DataFrame, max_features: int | None) -> list[str]:
    """Non-zero coefficients by |coef| (ties by name); if none, the first to enter the path.

    ``path`` rows run from strong to weak penalty.
    """
    nz = coef[coef != 0]
    if nz.empty:  # the CV optimum kept nothing: take the first feature to enter the path
        p = path
        entered = p.ne(0)
        if entered.to_numpy().any():
            first = entered.to_numpy().argmax(axis=0).astype(float)
            first[~entered.to_numpy().any(axis=0)] = np.inf
            order = sorted(range(len(first)), key=lambda i: (first[i], p.columns[i]))
            return [p.columns[order[0]]]
        return []
    ranked = sorted(nz.index, key=lambda c: (-abs(nz[c]), c))
    return ranked[:max_features] if max_features else ranked


def _path_reasons(coef: pd.Series, keep: list[str]) -> dict[str, str]:
    return {
        c: "LASSO coefficient 0" if coef[c] == 0 else "beyond max_features"
        for c in coef.index
        if c not in keep
    }


def _coef_reasons(coef: pd.Series, keep: list[str]) -> dict[str, str]:
    return {c: f"LASSO coefficient {coef[c]:.3g}" for c in keep}


def _cox_fit(df: pd.DataFrame, train, test, penalizer: float, l1_ratio: float):
    """Held-out negative mean partial log-likelihood (test given) or the coefficients."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines warns on convergence/collinearity
            m = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio)
            m.fit(df.iloc[train], "time", "event")
            if test is None:
                return m.params_
            return -float(m.score(df.iloc[test], scoring_method="log_likelihood"))
    except (ConvergenceError, ValueError, np.linalg.LinAlgError):
        return None


class CoxLassoSelector(_Selector):
    """L1-penalised Cox model (lifelines CoxPHFitter), penalizer chosen by K-fold CV.

    y: DataFrame with ``time`` and ``event``. Folds are stratified on the event.
    ``cv_error_``: penalizer, mean and sd over folds of the held-out negative mean
    partial log-likelihood (lifelines ``score``); ``path_``: penalizer x feature
    coefficients on all rows (standardised features). lifelines approximates |b|
    smoothly, so coefficients below ``coef_tol`` count as zero. The fits
    (folds x penalizers) run in ``n_jobs`` processes; lifelines' L1 fit takes about
    0.5-1 s each.
    """

    def __init__(
        self,
        penalizers: Sequence[float] = COX_PENALIZERS,
        l1_ratio: float = 1.0,
        cv: int = 5,
        random_state: int = 0,
        max_features: int | None = None,
        coef_tol: float = 1e-3,
        include_clinical: bool = False,
        n_jobs: int = 1,
    ):
        self.penalizers = penalizers
        self.l1_ratio = l1_ratio
        self.cv = cv
        self.random_state = random_state
        self.max_features = max_features
        self.coef_tol = coef_tol
        self.include_clinical = include_clinical
        self.n_jobs = n_jobs

    def fit(self, X, y):
        from joblib import Parallel, delayed
        from sklearn.model_selection import StratifiedKFold

        X, y = _sorted(X, y)
        if not isinstance(y, pd.DataFrame) or not {"time", "event"} <= set(y.columns):
            raise ValueError("CoxLassoSelector needs y as a DataFrame with time and event")
        cand = self._candidates(X)
        Z = pd.DataFrame(_standardize(X[cand].to_numpy(float)), index=X.index, columns=cand)
        df = Z.assign(time=y["time"].to_numpy(float), event=y["event"].to_numpy(int))
        pens = np.sort(np.asarray(self.penalizers, float))[::-1]  # strong -> weak penalty
        e = y["event"].to_numpy(int)
        n_splits = int(max(2, min(self.cv, np.bincount(e, minlength=2).min())))
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        splits = list(folds.split(Z, e)) + [(np.arange(len(Z)), None)]  # last: all rows
        jobs = [(f, i) for f in range(len(splits)) for i in range(len(pens))]
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_cox_fit)(df, splits[f][0], splits[f][1], pens[i], self.l1_ratio)
            for f, i in jobs
        )
        errors = np.full((n_splits, len(pens)), np.nan)
        path = np.full((len(pens), len(cand)), np.nan)
        for (f, i), res in zip(jobs, results, strict=True):
            if res is None:
                log.warning("Cox LASSO: no fit at penalizer %g (fold %d)", pens[i], f)
            elif f < n_splits:
                errors[f, i] = res
            else:
                path[i] = res.reindex(cand).to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all folds failed: NaN
            self.cv_error_ = pd.DataFrame(
                {"penalizer": pens, "mean": np.nanmean(errors, 0), "sd": np.nanstd(errors, 0)}
            )
        path = np.where(np.abs(path) < self.coef_tol, 0.0, path)
        self.path_ = pd.DataFrame(path, index=pd.Index(pens, name="penalizer"), columns=cand)
        mean = self.cv_error_["mean"].to_numpy()
        if np.isnan(mean).all():
            raise ValueError("Cox LASSO: no penalizer could be fitted; check the survival data")
        best = int(np.nanargmin(mean))
        self.penalizer_ = float(pens[best])
        coef = self.path_.iloc[best].fillna(0.0)
        keep = _keep_from_path(coef, self.path_.fillna(0.0), self.max_features)
        self.coef_ = self.scores_ = coef
        return self._finish(X, keep, _path_reasons(coef, keep), _coef_reasons(coef, keep))


class MRMRSelector(_Selector):
    """mRMR (mrmr-selection's mrmr_classif): the k most relevant, least redundant.

    ``scores_`` is the rank (1 = first picked).
    """

    def __init__(self, k: int = 10, include_clinical: bool = True):
        self.k = k
        self.include_clinical = include_clinical

    def fit(self, X, y):
        from mrmr import mrmr_classif

        X, y = _sorted(X, y)
        cand = self._candidates(X)
        yb = pd.Series(_binary_y(y), index=X.index)
        keep = list(mrmr_classif(X=X[cand], y=yb, K=min(self.k, len(cand)), show_progress=False))
        self.scores_ = pd.Series({c: float(i + 1) for i, c in enumerate(keep)})
        reasons = {c: "not among mRMR top k" for c in cand if c not in keep}
        return self._finish(X, keep, reasons, {c: f"mRMR rank {i + 1}" for i, c in enumerate(keep)})


class ForwardSelector(_Selector):
    """Greedy forward selection for a logistic regression, scored by stratified CV.

    Written as a loop over sklearn's ``cross_val_score`` rather than with
    ``SequentialFeatureSelector`` because the report needs the order in which
    features entered and the CV score after each step (``path_``), which SFS does
    not expose. Stops at ``max_features`` or, when ``tol`` is set, when the next
    feature improves the score by less than ``tol``. ``scores_``: CV score at entry.
    """

    def __init__(
        self,
        max_features: int = 5,
        scoring: str = "roc_auc",
        cv: int = 5,
        random_state: int = 0,
        tol: float | None = None,
        C: float = 1.0,
        include_clinical: bool = False,
    ):
        self.max_features = max_features
        self.scoring = scoring
        self.cv = cv
        self.random_state = random_state
        self.tol = tol
        self.C = C
        self.include_clinical = include_clinical

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = _sorted(X, y)
        cand = self._candidates(X)
        yb = _binary_y(y)
        n_splits = int(max(2, min(self.cv, np.bincount(yb).min())))
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        Z = X[cand].to_numpy(float)
        chosen: list[int] = []
        trail, best_prev = [], -np.inf
        while len(chosen) < min(self.max_features, len(cand)):
            scores = {
                j: cross_val_score(
                    model, Z[:, chosen + [j]], yb, cv=cv, scoring=self.scoring
                ).mean()
                for j in range(len(cand))
                if j not in chosen
            }
            j = max(scores, key=lambda i: (scores[i], -i))  # ties: earlier column
            if self.tol is not None and chosen and scores[j] - best_prev < self.tol:
                break
            chosen.append(j)
            best_prev = scores[j]
            trail.append((cand[j], scores[j]))
        self.path_ = pd.DataFrame(trail, columns=["feature", self.scoring])
        self.path_.index = pd.RangeIndex(1, len(trail) + 1, name="step")
        self.scores_ = pd.Series(dict(trail), dtype=float)
        keep = [c for c, _ in trail]
        kept = {c: f"step {i + 1}: CV {self.scoring} {s:.3f}" for i, (c, s) in enumerate(trail)}
        reasons = {c: "not chosen by forward selection" for c in cand if c not in keep}
        return self._finish(X, keep, reasons, kept)


def column_concordance(time: np.ndarray, event: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Harrell's C-index of every column of ``P`` (predicted survival: higher = longer).

    Same pairs and ties as lifelines' ``concordance_index`` (tested equal): (i, j) is
    comparable when i has the event and t_i < t_j, or t_i == t_j and j is censored;
    tied predictions count 1/2. One vectorised pass over all pairs instead of one
    lifelines call per feature.
    """
    t, e = np.asarray(time, float), np.asarray(event).astype(bool)
    comparable = ((t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :])) & e[
        :, None
    ]
    i, j = np.nonzero(comparable)
    if not len(i):
        return np.full(P.shape[1], 0.5)
    D = P[i] - P[j]
    return ((D < 0).sum(axis=0) + 0.5 * (D == 0).sum(axis=0)) / len(i)


class ConcordanceSelector(_Selector):
    """Survival: keep the k features whose univariate C-index is farthest from 0.5."""

    def __init__(self, k: int = 10, include_clinical: bool = False):
        self.k = k
        self.include_clinical = include_clinical

    def fit(self, X, y):
        X, y = _sorted(X, y)
        cand = self._candidates(X)
        t, e = y["time"].to_numpy(float), y["event"].to_numpy(int)
        c_index = column_concordance(t, e, -X[cand].to_numpy(float))
        score = dict(zip(cand, np.abs(c_index - 0.5).tolist(), strict=True))
        self.scores_ = pd.Series(score)
        keep = sorted(cand, key=lambda c: (-score[c], c))[: self.k]
        reasons = {
            c: f"|C-index - 0.5|={score[c]:.3f} not in top {self.k}" for c in cand if c not in keep
        }
        return self._finish(X, keep, reasons, {c: f"|C-index - 0.5|={score[c]:.3f}" for c in keep})


def _icc_filter(**kwargs):
    from radstudy.reproducibility import ICCFilter

    return ICCFilter(**kwargs)


STEPS = {
    "concordance": ConcordanceSelector,
    "variance": VarianceFilter,
    "icc": _icc_filter,
    "univariate": UnivariateSelector,
    "correlation": CorrelationPruner,
    "lasso": LassoSelector,
    "cox_lasso": CoxLassoSelector,
    "mrmr": MRMRSelector,
    "forward": ForwardSelector,
}
SEEDED = {"lasso", "cox_lasso", "forward"}


def build_selector(spec: dict, random_state: int = 0) -> list[tuple[str, BaseEstimator]]:
    """Pipeline steps from a config block like {variance: {}, lasso: {cv: 5}} (in order).

    Step names: concordance, variance, icc ({keep: [...]}), univariate, correlation,
    lasso, cox_lasso, mrmr, forward. Seeded steps get ``random_state`` unless the
    block sets one. A step with ``enabled: false`` is left out.
    """
    steps = []
    for name, params in (spec or {}).items():
        if name not in STEPS:
            raise ValueError(f"unknown selection step {name!r}; choose from {sorted(STEPS)}")
        kwargs = dict(params or {})
        if not kwargs.pop("enabled", True):
            continue
        if name in SEEDED:
            kwargs.setdefault("random_state", random_state)
        try:
            steps.append((name, STEPS[name](**kwargs)))
        except TypeError as err:
            raise ValueError(f"selection step {name!r}: {err}") from err
    return steps


def selection_report(steps: Sequence[tuple[str, BaseEstimator]]) -> pd.DataFrame:
    """One table of every fitted step's decisions (step, feature, kept, reason, score)."""
    frames = []
    for name, est in steps:
        if hasattr(est, "report"):
            frames.append(est.report().assign(step=name))
        elif hasattr(est, "reasons_"):
            r = est.reasons_
            frames.append(
                pd.DataFrame(
                    {
                        "feature": r.index,
                        "step": name,
                        "kept": r.index.isin(getattr(est, "selected_", [])),
                        "reason": r.to_numpy(),
                        "score": np.nan,
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["step", "feature", "kept", "reason", "score"])
    return pd.concat(frames, ignore_index=True)[["step", "feature", "kept", "reason", "score"]]
