"""Automatic model search: scaling x feature selection x model (x SMOTE), by Optuna.

:class:`ModelSearch` is one scikit-learn estimator. Its ``fit(X, y)`` runs an Optuna
study (TPE sampler seeded from ``random_state``) over the declared space, scoring each
configuration by stratified inner cross-validation *of the rows it is given* (mean
per-fold AUC for a binary outcome, Harrell's C-index for a survival outcome), then
refits the best configuration (or an ensemble of the best) on all of those rows.

The study first runs a few well-regularised starting configurations (``warm_start``,
:data:`WARM_START`) so that TPE's finds are always weighed against them, and an
ensemble by default averages the best configuration of each of the top model families
(``members``): on small tables, a pick among configurations by inner CV alone overfits
the inner folds, and members of different families err differently.

It takes the place of the selection .. classifier part of a model's pipeline; the
fixed pre-steps (feature groups, gap filling, ComBat, ICC filter) stay in front. The
outer cross-validation clones and refits the whole pipeline per fold, so the search
runs again inside every outer training fold and never sees the held-out rows: the
reported estimate is the outer one (nested CV). The final model is searched on all
training rows and applied, frozen, to test and external centers.

A configuration is the chain [median imputation -> top-k features of a ranking ->
scaling -> (SMOTE) -> model]. Rankings depend on the rows only (each is invariant to
the affine scalings searched), so each inner fold's ranking is computed once per
selector and reused by every trial: a trial costs its model fits. ``clinical__``
columns are never ranked: they pass every selector (k counts the other features).

Determinism: the sampler is seeded, trials run one after the other (Optuna's own
parallel trials are not reproducible with TPE), and the inner folds of a trial run in
parallel (``n_jobs``) with results gathered in fold order: the same data and seed give
the same history and predictions, whatever ``n_jobs``. Only ``timeout_s``, when it
stops a study early, makes the result depend on the machine's speed (a warning says so).
"""

from __future__ import annotations

import json
import logging
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

log = logging.getLogger(__name__)

SCALINGS = ("standard", "robust", "none")
BINARY_SELECTORS = ("none", "anova", "mannwhitney", "lasso", "mrmr", "relieff")
SURVIVAL_SELECTORS = ("none", "concordance")
BINARY_MODELS = (
    "logistic",
    "svm_linear",
    "svm_rbf",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "xgboost",
    "knn",
    "naive_bayes",
    "mlp",
)
SURVIVAL_MODELS = ("cox", "random_survival_forest", "gradient_boosting_survival")
# defaults: config.schema.yaml (models.{endpoint}.{model}.search) holds the same values
DEFAULT_SELECTORS = (*BINARY_SELECTORS, "concordance")
DEFAULT_CLASSIFIERS = tuple(m for m in BINARY_MODELS if m != "xgboost")
PROGRESS_EVERY = 10  # trials per progress line in the job log
SMOTE_BELOW = 0.4  # smote: auto searches SMOTE on/off when the minority share is below
SELECTOR_NAMES = {
    "none": "all features",
    "anova": "ANOVA F top {k}",
    "mannwhitney": "Mann-Whitney top {k}",
    "lasso": "L1-logistic path top {k}",
    "mrmr": "mRMR top {k}",
    "relieff": "ReliefF top {k}",
    "concordance": "univariate C-index top {k}",
}


# ----------------------------------------------------------------------------- rankings
def relieff_weights(X: np.ndarray, y: np.ndarray, n_neighbors: int = 10) -> np.ndarray:
    """ReliefF weights of the columns of ``X`` for a binary ``y`` (Kononenko 1994).

    Features are scaled to their range; every row is a probe; its ``n_neighbors``
    nearest hits (same class) and misses (other class) by Manhattan distance give
    W_f = mean over probes of (mean |x_f - miss_f| - mean |x_f - hit_f|). Higher =
    more relevant. O(n^2 p) time, O(n p) memory.

    Written here (about 20 lines of numpy) rather than taken from skrebate: that would
    be one more dependency for one ranking, which runs per inner fold of every search
    and needs no more than this.
    """
    X = np.asarray(X, float)
    y = np.asarray(y).astype(int)
    span = X.max(0) - X.min(0)
    Z = (X - X.min(0)) / np.where(span > 0, span, 1.0)
    n = len(Z)
    w = np.zeros(Z.shape[1])
    for i in range(n):
        diff = np.abs(Z - Z[i])
        dist = diff.sum(1)
        dist[i] = np.inf
        for same, sign in ((True, -1.0), (False, 1.0)):
            idx = np.flatnonzero((y == y[i]) == same)
            idx = idx[idx != i]
            if not len(idx):
                continue
            m = min(n_neighbors, len(idx))
            near = idx[np.argsort(dist[idx], kind="stable")[:m]]
            w += sign * diff[near].mean(0)
    return w / n


def _order(score: np.ndarray) -> np.ndarray:
    """Indices by descending score, NaN last, ties by column position."""
    s = np.nan_to_num(np.asarray(score, float), nan=-np.inf)
    return np.lexsort((np.arange(len(s)), -s))


def mrmr_order(X: np.ndarray, y: np.ndarray, k: int) -> list[int]:
    """The first ``k`` columns picked by mRMR as mrmr-selection's ``mrmr_classif`` picks
    them (its defaults: relevance = ANOVA F, redundancy = |Pearson r| floored at 0.001,
    score = F / mean redundancy with the features picked so far; columns with F <= 0
    never picked), in numpy: one matrix-vector product per pick instead of pandas
    correlations (~100x faster on 1,000 features, the same order; tested)."""
    from sklearn.feature_selection import f_classif

    floor = 0.001
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        F = np.nan_to_num(f_classif(X, y)[0], nan=0.0)
    feats = np.flatnonzero(F > 0)
    Z = X[:, feats] - X[:, feats].mean(0)
    norm = np.sqrt((Z**2).sum(0))
    Z = Z / np.where(norm > 0, norm, np.nan)
    rel, red = F[feats], np.zeros(len(feats))
    free = np.ones(len(feats), bool)
    picked: list[int] = []
    for i in range(min(k, len(feats))):
        if i == 0:
            score = rel.copy()
        else:
            r = np.abs(np.nan_to_num(Z.T @ Z[:, picked[-1]], nan=floor))
            red += np.clip(r, floor, None)
            den = red / i
            score = rel / np.where(den == 1.0, np.inf, den)
        score[~free] = -np.inf
        j = int(np.argmax(score))
        picked.append(j)
        free[j] = False
    return [int(feats[j]) for j in picked]


def _lasso_order(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Entry order along an L1-logistic path (standardised features): a feature that
    becomes non-zero at a stronger penalty ranks first; ties by |coefficient| at entry;
    features that never enter follow by |AUC - 0.5|."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import l1_min_c

    from radstudy.selection import column_auc

    Z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    c0 = l1_min_c(Z, y, loss="log")
    entry = np.full(Z.shape[1], np.inf)
    size = np.zeros(Z.shape[1])
    for step, C in enumerate(c0 * np.logspace(0, 3, 16)):
        clf = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coef = np.abs(clf.fit(Z, y).coef_.ravel())
        new = (coef > 0) & np.isinf(entry)
        entry[new], size[new] = step, coef[new]
    auc = np.abs(column_auc(X, y) - 0.5)
    return np.lexsort((np.arange(len(entry)), -auc, -size, entry))


def rank_features(method: str, X: np.ndarray, y, k_max: int, random_state: int = 0) -> np.ndarray:
    """Column indices of ``X`` (no gaps) by relevance to ``y``, best first, at least the
    ``k_max`` best (all columns for the cheap filters). ``y``: 0/1 array, or a DataFrame
    with time and event (``concordance``)."""
    from radstudy.selection import column_auc, column_concordance

    if method == "anova":
        from sklearn.feature_selection import f_classif

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return _order(f_classif(X, y)[0])
    if method == "mannwhitney":  # |AUC - 0.5| orders features as the U test's p-value
        return _order(np.abs(column_auc(X, y) - 0.5))
    if method == "relieff":
        return _order(relieff_weights(X, y))
    if method == "lasso":
        return _lasso_order(X, np.asarray(y).astype(int), random_state)
    if method == "mrmr":
        first = mrmr_order(X, np.asarray(y).astype(int), k_max)
        rest = [i for i in _order(np.abs(column_auc(X, y) - 0.5)) if i not in set(first)]
        return np.array(first + rest, dtype=int)
    if method == "concordance":
        t, e = y["time"].to_numpy(float), y["event"].to_numpy(int)
        return _order(np.abs(column_concordance(t, e, -X) - 0.5))
    raise ValueError(f"unknown selector {method!r}")


def _rank(method: str, X: np.ndarray, y, k_max: int, random_state: int) -> np.ndarray:
    """:func:`rank_features` on one thread (the inner folds are the parallel units)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return rank_features(method, X, y, k_max, random_state)


def _keep(ranking: np.ndarray | None, k: int, candidates: np.ndarray) -> np.ndarray:
    """Columns a configuration uses: the top ``k`` candidates of ``ranking`` (all when
    ``ranking`` is None) and every non-candidate (clinical) column, in column order."""
    cand = np.flatnonzero(candidates)
    top = cand if ranking is None else cand[ranking[:k]]
    return np.sort(np.concatenate([top, np.flatnonzero(~candidates)])).astype(int)


class RankSelector(BaseEstimator, TransformerMixin):
    """Keep the ``k`` best candidate columns by ``method`` (:func:`rank_features`,
    fitted on the given rows) and every column that is not a candidate."""

    def __init__(self, method="none", k=10, candidates=(), random_state=0):
        self.method = method
        self.k = k
        self.candidates = candidates
        self.random_state = random_state

    def fit(self, X, y=None):
        X = np.asarray(X, float)
        cand = (
            np.asarray(self.candidates, bool) if len(self.candidates) else np.ones(X.shape[1], bool)
        )
        ranking = None
        if self.method != "none" and cand.any():
            ranking = rank_features(self.method, X[:, cand], y, self.k, self.random_state)
        self.keep_ = _keep(ranking, self.k, cand)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return np.asarray(X, float)[:, self.keep_]


# ------------------------------------------------------------------------------ models
class SurvivalModel(BaseEstimator):
    """A scikit-survival estimator as the package's survival models are used: fit on
    a (time, event) DataFrame, ``predict`` = risk score (higher = worse),
    ``survival_function(X, times)`` = DataFrame times x rows."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y: pd.DataFrame):
        from sklearn.base import clone
        from sksurv.util import Surv

        target = Surv.from_arrays(y["event"].to_numpy(bool), y["time"].to_numpy(float))
        self.estimator_ = clone(self.estimator).fit(np.asarray(X, float), target)
        return self

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.estimator_.predict(np.asarray(X, float)), float)

    def survival_function(self, X, times) -> pd.DataFrame:
        times = np.asarray(list(times), float)
        fns = self.estimator_.predict_survival_function(np.asarray(X, float))
        cols = []
        for fn in fns:
            lo, hi = fn.domain
            cols.append(fn(np.clip(times, lo, hi)))
        return pd.DataFrame(np.array(cols).T.reshape(len(times), len(fns)), index=times)


def make_model(cfg: dict, random_state: int, n_estimators: int, n_fit: int, calibrated: bool):
    """The model of configuration ``cfg`` ({model, params}); ``n_fit``: rows it is fit
    on (kNN's k is capped below it). ``calibrated``: SVMs as
    :class:`radstudy.models.CalibratedSVM` (probabilities), else a plain SVC (trials
    score its decision values)."""
    name, p = cfg["model"], dict(cfg.get("params", {}))
    rs = random_state
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        r = {"l1": 1.0, "l2": 0.0}.get(p["penalty"], p.get("l1_ratio", 0.5))
        solver = "liblinear" if r in (0.0, 1.0) else "saga"
        return LogisticRegression(
            C=p["C"], l1_ratio=r, solver=solver, max_iter=2000, random_state=rs
        )
    if name in ("svm_linear", "svm_rbf"):
        from sklearn.model_selection import StratifiedKFold
        from sklearn.svm import SVC, LinearSVC

        from radstudy.models import CalibratedSVM

        if name == "svm_linear":  # liblinear: libsvm's linear kernel took minutes at small C
            svc = LinearSVC(C=p["C"], max_iter=5000, random_state=rs)
        else:  # an iteration cap bounds a pathological fit (a warning, silenced in trials)
            svc = SVC(C=p["C"], gamma=p["gamma"], max_iter=1_000_000, random_state=rs)
        if not calibrated:
            return svc
        cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=rs)
        return CalibratedSVM(svc, method="sigmoid", cv=cv, ensemble=False)
    if name in ("random_forest", "extra_trees"):
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        cls = RandomForestClassifier if name == "random_forest" else ExtraTreesClassifier
        return cls(
            n_estimators=n_estimators,
            max_features=p["max_features"],
            min_samples_leaf=p["min_samples_leaf"],
            class_weight=None if p["class_weight"] == "none" else "balanced",
            n_jobs=1,
            random_state=rs,
        )
    if name == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=max(10, n_estimators // 2),
            learning_rate=p["learning_rate"],
            max_leaf_nodes=p["max_leaf_nodes"],
            min_samples_leaf=p["min_samples_leaf"],
            l2_regularization=p["l2_regularization"],
            early_stopping=False,
            random_state=rs,
        )
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(
            n_estimators=n_estimators,
            max_depth=p["max_depth"],
            learning_rate=p["learning_rate"],
            subsample=p["subsample"],
            colsample_bytree=p["colsample_bytree"],
            reg_lambda=p["reg_lambda"],
            n_jobs=1,
            tree_method="exact",
            eval_metric="logloss",
            random_state=rs,
        )
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(
            n_neighbors=int(max(1, min(p["n_neighbors"], n_fit - 1))),
            weights=p["weights"],
            p=p["p"],
        )
    if name == "naive_bayes":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB(var_smoothing=p["var_smoothing"])
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=(p["hidden"],),
            alpha=p["alpha"],
            learning_rate_init=p["learning_rate_init"],
            max_iter=500,
            random_state=rs,
        )
    if name == "cox":
        from radstudy.survival import CoxScoreModel

        return CoxScoreModel(penalizer=p["penalizer"], l1_ratio=p["l1_ratio"])
    if name == "random_survival_forest":
        from sksurv.ensemble import RandomSurvivalForest

        return SurvivalModel(
            RandomSurvivalForest(
                n_estimators=n_estimators,
                max_features=p["max_features"],
                min_samples_leaf=p["min_samples_leaf"],
                n_jobs=1,
                random_state=rs,
            )
        )
    if name == "gradient_boosting_survival":
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return SurvivalModel(
            GradientBoostingSurvivalAnalysis(
                n_estimators=max(10, n_estimators // 2),
                learning_rate=p["learning_rate"],
                max_depth=p["max_depth"],
                subsample=p["subsample"],
                random_state=rs,
            )
        )
    raise ValueError(f"unknown search model {name!r}")


def suggest_params(trial, name: str) -> dict:
    """The hyperparameters of model ``name`` drawn by ``trial`` (names prefixed by the
    model in the study; returned without the prefix). The ranges are the search space."""

    def f(key, lo, hi, log=False):
        return trial.suggest_float(f"{name}.{key}", lo, hi, log=log)

    def i(key, lo, hi, log=False):
        return trial.suggest_int(f"{name}.{key}", lo, hi, log=log)

    def c(key, choices):
        return trial.suggest_categorical(f"{name}.{key}", choices)

    if name == "logistic":
        p = {"penalty": c("penalty", ["l1", "l2", "elasticnet"]), "C": f("C", 1e-3, 1e2, True)}
        if p["penalty"] == "elasticnet":
            p["l1_ratio"] = f("l1_ratio", 0.1, 0.9)
        return p
    if name == "svm_linear":
        return {"C": f("C", 1e-4, 10.0, True)}
    if name == "svm_rbf":
        return {"C": f("C", 1e-2, 1e3, True), "gamma": f("gamma", 1e-4, 1.0, True)}
    if name in ("random_forest", "extra_trees"):
        return {
            "max_features": f("max_features", 0.02, 0.5, True),
            "min_samples_leaf": i("min_samples_leaf", 1, 10),
            "class_weight": c("class_weight", ["none", "balanced"]),
        }
    if name == "hist_gradient_boosting":
        return {
            "learning_rate": f("learning_rate", 0.01, 0.3, True),
            "max_leaf_nodes": i("max_leaf_nodes", 2, 16, True),
            "min_samples_leaf": i("min_samples_leaf", 3, 20),
            "l2_regularization": f("l2_regularization", 1e-3, 10.0, True),
        }
    if name == "xgboost":
        return {
            "max_depth": i("max_depth", 1, 6),
            "learning_rate": f("learning_rate", 0.01, 0.3, True),
            "subsample": f("subsample", 0.5, 1.0),
            "colsample_bytree": f("colsample_bytree", 0.3, 1.0),
            "reg_lambda": f("reg_lambda", 1e-3, 10.0, True),
        }
    if name == "knn":
        return {
            "n_neighbors": i("n_neighbors", 3, 31),
            "weights": c("weights", ["uniform", "distance"]),
            "p": c("p", [1, 2]),
        }
    if name == "naive_bayes":
        return {"var_smoothing": f("var_smoothing", 1e-12, 1e-1, True)}
    if name == "mlp":
        return {
            "hidden": c("hidden", [8, 16, 32, 64]),
            "alpha": f("alpha", 1e-5, 1.0, True),
            "learning_rate_init": f("learning_rate_init", 1e-4, 1e-2, True),
        }
    if name == "cox":
        return {"penalizer": f("penalizer", 1e-3, 1.0, True), "l1_ratio": f("l1_ratio", 0.0, 1.0)}
    if name == "random_survival_forest":
        return {
            "max_features": f("max_features", 0.02, 0.5, True),
            "min_samples_leaf": i("min_samples_leaf", 3, 15),
        }
    if name == "gradient_boosting_survival":
        return {
            "learning_rate": f("learning_rate", 0.01, 0.3, True),
            "max_depth": i("max_depth", 1, 3),
            "subsample": f("subsample", 0.5, 1.0),
        }
    raise ValueError(f"unknown search model {name!r}")


def decorrelated_columns(X: np.ndarray, candidates: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the columns of ``X`` to keep: every non-candidate (clinical) column,
    and the candidates left after dropping each one whose Spearman |r| with an earlier
    kept candidate exceeds ``threshold`` (greedy, in column order; gaps filled with the
    column median; constant columns kept for the rankings to ignore). ``threshold`` >= 1:
    all columns. Unsupervised: the labels are not used.

    Written here: scikit-learn has no correlation filter, and the selection module's
    CorrelationPruner keeps the member of a pair with the better univariate score,
    which uses the labels (that is a selector's job, searched after this)."""
    n_col = X.shape[1]
    cand = np.flatnonzero(candidates)
    if threshold >= 1.0 or len(cand) < 2:
        return np.arange(n_col)
    from scipy.stats import rankdata

    Z = X[:, cand]
    med = np.nanmedian(Z, axis=0) if len(Z) else np.zeros(Z.shape[1])
    Z = np.where(np.isnan(Z), np.where(np.isnan(med), 0.0, med), Z)
    R = rankdata(Z, axis=0)
    R = R - R.mean(0)
    norm = np.sqrt((R**2).sum(0))
    varying = norm > 0
    R[:, varying] /= norm[varying]
    alive = np.ones(len(cand), bool)
    keep = np.zeros(len(cand), bool)
    for j in range(len(cand)):
        if not alive[j]:
            continue
        keep[j] = True
        if varying[j]:
            r = np.abs(R.T @ R[:, j])
            alive &= ~((r > threshold) & varying)
    out = np.concatenate([cand[keep], np.flatnonzero(~np.asarray(candidates, bool))])
    return np.sort(out).astype(int)


# Starting configurations tried first when ``warm_start`` is on (before TPE samples):
# well-regularised choices that do well on small radiomics tables, so the search always
# weighs them against what it finds. Each is used only if the space has its parts.
WARM_START = (
    {"scaling": "standard", "selector": "none", "model": "logistic",
     "logistic.penalty": "l2", "logistic.C": 0.003},
    {"scaling": "standard", "selector": "anova", "k": 16, "model": "logistic",
     "logistic.penalty": "l2", "logistic.C": 0.1},
    {"scaling": "none", "selector": "none", "model": "extra_trees",
     "extra_trees.max_features": 0.1, "extra_trees.min_samples_leaf": 1,
     "extra_trees.class_weight": "none"},
    {"scaling": "standard", "selector": "anova", "k": 32, "model": "svm_rbf",
     "svm_rbf.C": 1.0, "svm_rbf.gamma": 0.03},
    {"scaling": "standard", "selector": "mrmr", "k": 16, "model": "random_forest",
     "random_forest.max_features": 0.2, "random_forest.min_samples_leaf": 2,
     "random_forest.class_weight": "none"},
)  # fmt: skip
WARM_START_SURVIVAL = (
    {"scaling": "standard", "selector": "none", "model": "cox",
     "cox.penalizer": 0.3, "cox.l1_ratio": 0.0},
    {"scaling": "standard", "selector": "concordance", "k": 16, "model": "cox",
     "cox.penalizer": 0.1, "cox.l1_ratio": 0.0},
    {"scaling": "none", "selector": "none", "model": "random_survival_forest",
     "random_survival_forest.max_features": 0.1, "random_survival_forest.min_samples_leaf": 5},
)  # fmt: skip


def warm_start_params(space: dict, survival: bool) -> list[dict]:
    """The starting configurations that fit ``space`` (as Optuna trial params)."""
    out = []
    k_lo, k_hi = space["k"]
    for p in WARM_START_SURVIVAL if survival else WARM_START:
        if (
            p["scaling"] not in space["scaling"]
            or p["selector"] not in space["selector"]
            or p["model"] not in space["model"]
        ):
            continue
        p = dict(p)
        if "k" in p:
            p["k"] = int(min(max(p["k"], k_lo), k_hi))
        if len(space["smote"]) > 1:
            p["smote"] = False
        out.append(p)
    return out


def make_chain(
    cfg: dict,
    random_state: int,
    n_estimators: int,
    n_fit: int,
    calibrated: bool,
    candidates=None,
    n_minority: int | None = None,
):
    """The (imblearn) Pipeline of configuration ``cfg``. With ``candidates`` (the
    candidate-column mask) it starts with median imputation and the ranking selector
    (the final refit); without, its input is already imputed and selected (a trial)."""
    from imblearn.pipeline import Pipeline
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import RobustScaler, StandardScaler

    steps = []
    if candidates is not None:
        steps.append(("impute", SimpleImputer(strategy="median")))
        sel = RankSelector(
            cfg["selector"], cfg["k"], tuple(bool(c) for c in candidates), random_state
        )
        steps.append(("select", sel))
    scaler = {"standard": StandardScaler(), "robust": RobustScaler()}.get(cfg["scaling"])
    steps.append(("scale", scaler if scaler is not None else "passthrough"))
    if cfg.get("smote") and (n_minority is None or n_minority >= 2):
        from imblearn.over_sampling import SMOTE

        k = 5 if n_minority is None else int(min(5, n_minority - 1))
        steps.append(("smote", SMOTE(random_state=random_state, k_neighbors=k)))
    steps.append(("model", make_model(cfg, random_state, n_estimators, n_fit, calibrated)))
    return Pipeline(steps)


def _raw_score(chain, X, survival: bool) -> np.ndarray:
    """What a trial is scored on: risk (survival), P(class 1), or an SVC's decision value."""
    if survival:
        return np.asarray(chain.predict(X), float)
    if hasattr(chain, "predict_proba"):
        try:
            return chain.predict_proba(X)[:, 1]
        except AttributeError:  # SVC(probability=False) exposes the method but refuses it
            pass
    return np.asarray(chain.decision_function(X), float)


def metric(y, score: np.ndarray) -> float:
    """AUC (binary y) or Harrell's C-index (time/event DataFrame; score = risk)."""
    if isinstance(y, pd.DataFrame):
        from radstudy.selection import column_concordance

        t, e = y["time"].to_numpy(float), y["event"].to_numpy(int)
        return float(column_concordance(t, e, -np.asarray(score, float)[:, None])[0])
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y).astype(int), score))


def _fit_score(cfg, Xtr, ytr, Xte, random_state, n_estimators) -> np.ndarray:
    """Fit one configuration on one inner fold's training rows; scores of its test rows."""
    from threadpoolctl import threadpool_limits

    survival = isinstance(ytr, pd.DataFrame)
    n_min = None if survival else int(np.bincount(np.asarray(ytr).astype(int), minlength=2).min())
    # one thread per fit: the folds are the parallel units (native threads on these
    # small matrices cost more than they give: 25x slower boosting measured on 2 cores)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        chain = make_chain(cfg, random_state, n_estimators, len(Xtr), False, n_minority=n_min)
        chain.fit(Xtr, ytr)
        return _raw_score(chain, Xte, survival)


def _fit_final(cfg, X, y, candidates, random_state, n_estimators, calibrated):
    """Refit one configuration (with its imputation and selector) on all given rows."""
    from threadpoolctl import threadpool_limits

    survival = isinstance(y, pd.DataFrame)
    n_min = None if survival else int(np.bincount(np.asarray(y).astype(int), minlength=2).min())
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        chain = make_chain(
            cfg, random_state, n_estimators, len(X), calibrated, candidates, n_minority=n_min
        )
        return chain.fit(X, y)


def describe(cfg: dict) -> str:
    """One line naming a configuration: 'robust scaling -> mRMR top 16 -> svm_rbf (C=3.1, ...)'."""
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(cfg.get("params", {}).items())
    )
    parts = [
        f"{cfg['scaling']} scaling" if cfg["scaling"] != "none" else "no scaling",
        SELECTOR_NAMES[cfg["selector"]].format(k=cfg["k"]),
    ]
    if cfg.get("smote"):
        parts.append("SMOTE")
    parts.append(f"{cfg['model']} ({params})" if params else cfg["model"])
    return " -> ".join(parts)


# ------------------------------------------------------------------------------ search
class ModelSearch(BaseEstimator):
    """Nested automatic search over scaling x selection x model (see the module doc).

    Parameters mirror config key ``models.{endpoint}.{model}.search`` (defaults equal
    the schema's). After ``fit``: ``best_params_`` (the chosen configuration),
    ``best_score_`` (its inner-CV AUC / C-index: optimistic, the outer CV is the
    estimate), ``history_`` (trial, value, params, state), ``members_`` (fitted
    chains: the best, or the ensemble's), ``selected_features_``, ``timed_out_``,
    ``member_params_`` (the members' trial parameters, as Optuna holds them).

    ``fixed_params`` (a list of ``member_params_``): no search; those configurations
    are scored by the same inner CV (for stacking's out-of-fold scores) and every one
    of them becomes a member. The shuffled-label null check of a searched model refits
    the configurations chosen on the real labels this way: each fold still refits its
    whole chain (imputation, ComBat, feature ranking) on its own training rows.
    """

    def __init__(
        self,
        n_trials=40,
        timeout_s=0,
        inner_cv=3,
        inner_repeats=1,
        warm_start=True,
        decorrelate=0.9,
        scaling=SCALINGS,
        selectors=DEFAULT_SELECTORS,
        k_min=4,
        k_max=64,
        classifiers=DEFAULT_CLASSIFIERS,
        survival_models=SURVIVAL_MODELS,
        smote="auto",
        n_estimators=200,
        ensemble="average",
        top_k=5,
        members="distinct_models",
        random_state=0,
        n_jobs=1,
        fixed_params=None,
    ):
        self.n_trials = n_trials
        self.timeout_s = timeout_s
        self.inner_cv = inner_cv
        self.inner_repeats = inner_repeats
        self.warm_start = warm_start
        self.decorrelate = decorrelate
        self.scaling = scaling
        self.selectors = selectors
        self.k_min = k_min
        self.k_max = k_max
        self.classifiers = classifiers
        self.survival_models = survival_models
        self.smote = smote
        self.n_estimators = n_estimators
        self.ensemble = ensemble
        self.top_k = top_k
        self.members = members
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.fixed_params = fixed_params

    @classmethod
    def from_spec(cls, spec: dict, random_state: int, n_jobs: int = 1) -> ModelSearch:
        """From a config ``search`` block (defaults filled in)."""
        keys = (
            "n_trials",
            "timeout_s",
            "inner_cv",
            "inner_repeats",
            "warm_start",
            "decorrelate",
            "k_min",
            "k_max",
            "smote",
            "n_estimators",
        )
        lists = ("scaling", "selectors", "classifiers", "survival_models")
        ens = spec.get("ensemble", {})
        return cls(
            **{k: spec[k] for k in keys if k in spec},
            **{k: tuple(spec[k]) for k in lists if k in spec},
            **{
                p: ens[k]
                for p, k in (("ensemble", "method"), ("top_k", "top_k"), ("members", "members"))
                if k in ens
            },
            random_state=random_state,
            n_jobs=n_jobs,
        )

    # --------------------------------------------------------------------- the study
    def _space(self, survival: bool, n_cand: int, minority_share: float) -> dict:
        allowed = SURVIVAL_SELECTORS if survival else BINARY_SELECTORS
        selectors = [s for s in self.selectors if s in allowed] or ["none"]
        if n_cand == 0:
            selectors = ["none"]
        models = [m for m in (self.survival_models if survival else self.classifiers)]
        known = SURVIVAL_MODELS if survival else BINARY_MODELS
        models = [m for m in models if m in known]
        if not models:
            kind = "survival_models" if survival else "classifiers"
            raise ValueError(f"search.{kind}: none for this endpoint type (choose from {known})")
        k_hi = max(1, min(int(self.k_max), n_cand))
        k_lo = max(1, min(int(self.k_min), k_hi))
        smote = {"never": [False], "always": [True], "search": [False, True]}.get(self.smote)
        if smote is None:  # auto
            smote = [False, True] if minority_share < SMOTE_BELOW else [False]
        if survival:
            smote = [False]
        return {
            "scaling": list(self.scaling),
            "selector": selectors,
            "k": (k_lo, k_hi),
            "model": models,
            "smote": smote,
            "n_cand": n_cand,
        }

    @staticmethod
    def _suggest(trial, space: dict) -> dict:
        cfg = {"scaling": trial.suggest_categorical("scaling", space["scaling"])}
        cfg["selector"] = trial.suggest_categorical("selector", space["selector"])
        k_lo, k_hi = space["k"]
        if cfg["selector"] == "none":
            cfg["k"] = space["n_cand"]
        else:
            cfg["k"] = trial.suggest_int("k", k_lo, k_hi, log=True) if k_hi > k_lo else k_hi
        if len(space["smote"]) > 1:
            cfg["smote"] = trial.suggest_categorical("smote", space["smote"])
        else:
            cfg["smote"] = space["smote"][0]
        cfg["model"] = trial.suggest_categorical("model", space["model"])
        cfg["params"] = suggest_params(trial, cfg["model"])
        return cfg

    def fit(self, X, y):
        import optuna
        from joblib import Parallel, delayed
        from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

        # Optuna's warnings (a failed trial and why) to the job log, not to stderr
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        survival = isinstance(y, pd.DataFrame)
        Xdf = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        names = [str(c) for c in Xdf.columns]
        Xa = Xdf.to_numpy(float)
        if survival:
            y = y.reset_index(drop=True)
            strat = y["event"].to_numpy(int)
        else:
            y = np.asarray(y).astype(int)
            strat = y
            self.classes_ = np.array([0, 1])
        self.survival_ = survival
        self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = len(names)
        candidates = np.array([not n.startswith("clinical__") for n in names], bool)
        # near-duplicate candidate features out first (unsupervised, these rows only)
        self.columns_ = decorrelated_columns(Xa, candidates, float(self.decorrelate))
        if len(self.columns_) < len(names):
            log.info(
                "search: %d of %d features kept after dropping those with Spearman |r| > %g "
                "to a kept one (search.decorrelate)",
                int(candidates[self.columns_].sum()),
                int(candidates.sum()),
                self.decorrelate,
            )
        Xdf = Xdf.iloc[:, self.columns_]
        names = [names[i] for i in self.columns_]
        Xa = Xa[:, self.columns_]
        candidates = candidates[self.columns_]
        counts = np.bincount(strat, minlength=2)
        n_splits = int(max(2, min(self.inner_cv, counts.min())))
        if int(self.inner_repeats) > 1:
            cv = RepeatedStratifiedKFold(
                n_splits=n_splits, n_repeats=int(self.inner_repeats), random_state=self.random_state
            )
        else:
            cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        folds = []
        for tr, te in cv.split(Xa, strat):
            med = np.nanmedian(Xa[tr], axis=0)
            med = np.where(np.isnan(med), 0.0, med)
            ytr = y.iloc[tr] if survival else y[tr]
            yte = y.iloc[te] if survival else y[te]
            Xtr = np.where(np.isnan(Xa[tr]), med, Xa[tr])
            Xte = np.where(np.isnan(Xa[te]), med, Xa[te])
            folds.append((Xtr, ytr, Xte, yte, te))
        space = self._space(survival, int(candidates.sum()), counts.min() / counts.sum())
        rankings: dict[tuple[int, str], np.ndarray] = {}
        oof: dict[int, np.ndarray] = {}
        par = Parallel(n_jobs=self.n_jobs)
        cand_idx = np.flatnonzero(candidates)

        def rank_all(method: str) -> None:
            if method == "none" or (0, method) in rankings:
                return
            got = par(
                delayed(_rank)(method, f[0][:, cand_idx], f[1], space["k"][1], self.random_state)
                for f in folds
            )
            for i, r in enumerate(got):
                rankings[(i, method)] = r

        def objective(trial) -> float:
            cfg = self._suggest(trial, space)
            rank_all(cfg["selector"])
            cols = [
                _keep(rankings.get((i, cfg["selector"])), cfg["k"], candidates)
                for i in range(len(folds))
            ]
            scores = par(
                delayed(_fit_score)(
                    cfg, f[0][:, c], f[1], f[2][:, c], self.random_state, self.n_estimators
                )
                for f, c in zip(folds, cols, strict=True)
            )
            vals = [metric(f[3], s) for f, s in zip(folds, scores, strict=True)]
            pred = np.empty(len(Xa))
            for f, s in zip(folds, scores, strict=True):
                pred[f[4]] = s
            oof[trial.number] = pred
            return float(np.mean(vals))

        start = time.perf_counter()
        what = "C-index" if survival else "AUC"

        def progress(study, trial) -> None:
            done = sum(t.state.is_finished() for t in study.trials)
            if done % PROGRESS_EVERY and done != self.n_trials:
                return
            try:
                best = study.best_trial
                line = f"best inner {what} {best.value:.3f} (trial {best.number})"
            except ValueError:
                line = "no trial completed yet"
            log.info(
                "search: %d/%d trials, %s, %.1f s",
                done,
                self.n_trials,
                line,
                time.perf_counter() - start,
            )

        sampler = optuna.samplers.TPESampler(seed=int(self.random_state))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        fixed = [dict(p) for p in self.fixed_params or ()]
        n_trials = len(fixed) if fixed else int(self.n_trials)
        if fixed:  # the given configurations only (no search): see ``fixed_params``
            with warnings.catch_warnings():  # a k beyond these rows' candidates: kept
                warnings.simplefilter("ignore")
                for params in fixed:
                    study.enqueue_trial(params, skip_if_exists=False)
        elif self.warm_start:
            for params in warm_start_params(space, survival)[:n_trials]:
                study.enqueue_trial(params)
        run = {"func": objective, "catch": (Exception,), "callbacks": [progress]}
        study.optimize(n_trials=1, **run)  # one trial even under a tiny time cap
        if n_trials > 1:
            left = float(self.timeout_s) - (time.perf_counter() - start)
            if fixed or not self.timeout_s or left > 0:
                timeout = left if self.timeout_s and not fixed else None
                study.optimize(n_trials=n_trials - 1, timeout=timeout, **run)
        n_run = sum(t.state.is_finished() for t in study.trials)  # enqueued: not yet run
        self.timed_out_ = n_run < n_trials
        if self.timed_out_:
            log.warning(
                "search: search.timeout_s (%g s) reached after %d of %d trials: the result "
                "now depends on this machine's speed (same config, other bytes elsewhere)",
                self.timeout_s,
                n_run,
                self.n_trials,
            )
        self.history_ = _history(study)
        self.distributions_ = {
            t.number: {
                k: optuna.distributions.distribution_to_json(d) for k, d in t.distributions.items()
            }
            for t in study.trials
        }
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise ValueError("search: no configuration could be fitted (every trial failed)")
        # best first; ties: the earlier trial; one member per distinct configuration
        complete.sort(key=lambda t: (-t.value, t.number))
        chosen, seen = [], set()
        for t in complete:
            if self.members == "distinct_models":  # one member per model family
                key = t.params["model"]
            else:
                key = json.dumps(t.params, sort_keys=True)
            if key not in seen:
                seen.add(key)
                chosen.append(t)
        n_members = 1 if self.ensemble == "none" else max(1, min(int(self.top_k), len(chosen)))
        chosen = chosen[: len(chosen) if fixed else n_members]
        self.member_params_ = [dict(t.params) for t in chosen]
        configs = [self._config(t.params, space) for t in chosen]
        self.member_configs_ = configs
        self.best_params_ = configs[0]
        self.best_score_ = float(chosen[0].value)
        self.best_trial_ = int(chosen[0].number)
        self.member_trials_ = [int(t.number) for t in chosen]
        calibrated = self.ensemble != "stacking"
        Xf = Xdf.to_numpy(float)
        self.members_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_final)(
                c, Xf, y, candidates, self.random_state, self.n_estimators, calibrated
            )
            for c in configs
        )
        if survival and self.ensemble != "none":
            # members' risks on a common scale: z-scores over the rows they were fit on
            risks = np.column_stack([m.predict(Xf) for m in self.members_])
            self.risk_mean_, self.risk_sd_ = (
                risks.mean(0),
                np.where(risks.std(0) > 0, risks.std(0), 1.0),
            )
        if self.ensemble == "stacking":
            Z = np.column_stack([oof[t.number] for t in chosen])
            if survival:
                from radstudy.survival import CoxScoreModel

                self.oof_mean_, self.oof_sd_ = Z.mean(0), np.where(Z.std(0) > 0, Z.std(0), 1.0)
                self.meta_ = CoxScoreModel(penalizer=0.1).fit(
                    pd.DataFrame((Z - self.oof_mean_) / self.oof_sd_), y
                )
            else:
                from sklearn.linear_model import LogisticRegression

                self.meta_ = LogisticRegression(max_iter=1000).fit(Z, y)
        first = self.members_[0]
        keep = sorted(set().union(*(m.named_steps["select"].keep_ for m in self.members_)))
        self.selected_features_ = [names[i] for i in keep]
        self.feature_weights_ = _weights(first, names) if len(self.members_) == 1 else {}
        log.info(
            "%s: best inner %s %.3f: %s%s",
            "fixed configurations (no search)" if fixed else "search",
            what,
            self.best_score_,
            describe(self.best_params_),
            f" (+{len(self.members_) - 1} more, {self.ensemble})" if len(self.members_) > 1 else "",
        )
        return self

    @staticmethod
    def _config(params: dict, space: dict) -> dict:
        """A trial's flat Optuna params -> configuration dict (as :meth:`_suggest` built it)."""
        model = params["model"]
        cfg = {
            "scaling": params["scaling"],
            "selector": params["selector"],
            "k": params.get(
                "k", space["n_cand"] if params["selector"] == "none" else space["k"][1]
            ),
            "smote": params.get("smote", space["smote"][0]),
            "model": model,
            "params": {
                k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(model + ".")
            },
        }
        return cfg

    # ------------------------------------------------------------------ prediction
    def _member_scores(self, X) -> np.ndarray:
        Xa = np.asarray(X, float)[:, self.columns_]
        return np.column_stack([_raw_score(m, Xa, self.survival_) for m in self.members_])

    def predict_proba(self, X) -> np.ndarray:
        if self.ensemble == "stacking":
            p = self.meta_.predict_proba(self._member_scores(X))[:, 1]
        else:
            Xa = np.asarray(X, float)[:, self.columns_]
            p = np.mean([m.predict_proba(Xa)[:, 1] for m in self.members_], axis=0)
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        """Binary: the class (P >= 0.5); survival: the risk score (higher = worse)."""
        if not self.survival_:
            return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
        S = self._member_scores(X)
        if self.ensemble == "none":
            return S[:, 0]
        if self.ensemble == "stacking":
            return self.meta_.predict((S - self.oof_mean_) / self.oof_sd_)
        return ((S - self.risk_mean_) / self.risk_sd_).mean(1)

    def survival_function(self, X, times) -> pd.DataFrame:
        """Predicted S(t | x) at ``times`` (times x rows), survival endpoints."""
        if self.ensemble == "stacking":
            S = self._member_scores(X)
            return self.meta_.survival_function((S - self.oof_mean_) / self.oof_sd_, times)
        Xa = np.asarray(X, float)[:, self.columns_]
        curves = []
        for m in self.members_:
            Z = m[:-1].transform(Xa)
            curves.append(m.steps[-1][1].survival_function(Z, list(times)).to_numpy())
        return pd.DataFrame(np.mean(curves, axis=0), index=np.asarray(list(times), float))

    # -------------------------------------------------------------------- reporting
    def param_importances(self, seed: int = 0) -> dict[str, float]:
        """fANOVA importances (seeded) of the parameters every completed trial has
        (scaling, selector, model, ...), from the history; {} when they cannot be told."""
        import optuna

        hist = self.history_[self.history_["state"] == "COMPLETE"]
        if len(hist) < 2:
            return {}
        trials = []
        for _, r in hist.iterrows():
            dists = {
                k: optuna.distributions.json_to_distribution(v)
                for k, v in self.distributions_[int(r["trial"])].items()
            }
            trials.append(
                optuna.trial.create_trial(
                    params=json.loads(r["params"]), distributions=dists, value=float(r["value"])
                )
            )
        study = optuna.create_study(direction="maximize")
        study.add_trials(trials)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=int(seed))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError) as err:
            log.info("search: no parameter importances: %s", err)
            return {}
        return {k: float(v) for k, v in sorted(imp.items(), key=lambda kv: (-kv[1], kv[0]))}

    def summary(self, seed: int = 0) -> dict:
        """The card's ``search`` entry: the chosen pipeline, inner score, trials, members."""
        value = self.history_.set_index("trial")["value"]
        members = [
            {"trial": t, "inner": float(value[t]), "pipeline": describe(c)}
            for t, c in zip(self.member_trials_, self.member_configs_, strict=True)
        ]
        return {
            "metric": "inner-CV C-index" if self.survival_ else "inner-CV AUC",
            "best_value": self.best_score_,
            "best_trial": self.best_trial_,
            "best_params": self.best_params_,
            "pipeline": describe(self.best_params_),
            "ensemble": {"method": self.ensemble, "members": members},
            "n_trials": int(len(self.history_)),
            "n_complete": int((self.history_["state"] == "COMPLETE").sum()),
            "timed_out": bool(self.timed_out_),
            "importances": self.param_importances(seed),
        }


def _history(study) -> pd.DataFrame:
    """trial, value, params (JSON, sorted keys), state: no clock times (same bytes)."""
    rows = [
        {
            "trial": int(t.number),
            "value": float(t.value) if t.value is not None else np.nan,
            "params": json.dumps(t.params, sort_keys=True),
            "state": t.state.name,
        }
        for t in study.trials
        if t.state.name != "WAITING"  # enqueued, never run (a time cap stopped the study)
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


HISTORY_COLUMNS = ["trial", "value", "params", "state"]


def empty_history() -> pd.DataFrame:
    """The history table of a model without a search (the rule's output is fixed)."""
    return pd.DataFrame(
        {
            "trial": pd.Series(dtype="int64"),
            "value": pd.Series(dtype="float64"),
            "params": pd.Series(dtype="object"),
            "state": pd.Series(dtype="object"),
        }
    )


def _weights(chain, names: list[str]) -> dict[str, float]:
    """Feature -> weight of a fitted chain's model (coefficients or importances)."""
    keep = chain.named_steps["select"].keep_
    est = chain.named_steps["model"]
    if hasattr(est, "calibrated_classifiers_"):
        est = est.calibrated_classifiers_[0].estimator
    w = None
    if hasattr(est, "coef_") and np.asarray(est.coef_).size == len(keep):
        w = np.asarray(est.coef_, float).ravel()
    elif hasattr(est, "feature_importances_"):
        w = np.asarray(est.feature_importances_, float)
    if w is None or len(w) != len(keep):
        return {}
    return {names[i]: float(v) for i, v in zip(keep, w, strict=True)}
