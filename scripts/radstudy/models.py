"""Classifiers as one imblearn Pipeline, cross-validated predictions, model cards.

The pipeline is [caller's pre-steps (group selection, ComBat, ICC filter,
selection) -> median imputation -> standard scaling -> optional SMOTE ->
classifier]. imblearn's Pipeline applies SMOTE only while fitting, i.e. only
to training folds. Cross-validation clones and refits the whole pipeline in
every fold.
"""

from __future__ import annotations

import importlib.metadata as md
import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV

from radstudy.errors import CaseError
from radstudy.tables import column_group

log = logging.getLogger(__name__)


class ColumnGroupSelector(BaseEstimator, TransformerMixin):
    """Keep feature columns of the named groups (+ ``keep_cols``, e.g. the batch column)."""

    def __init__(self, groups=("radiomics",), keep_cols=()):
        self.groups = groups
        self.keep_cols = keep_cols

    def fit(self, X: pd.DataFrame, y=None):
        self.columns_ = [
            c for c in X.columns if c in self.keep_cols or column_group(c) in self.groups
        ]
        if not [c for c in self.columns_ if c not in self.keep_cols]:
            raise ValueError(f"no feature column of groups {list(self.groups)}")
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.columns_]


class DataFrameStep(BaseEstimator, TransformerMixin):
    """Wrap a numpy transformer (imputer, scaler) so column names survive."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y=None):
        self.estimator_ = clone(self.estimator).fit(X)
        self.columns_ = list(X.columns)
        return self

    def transform(self, X):
        return pd.DataFrame(self.estimator_.transform(X), index=X.index, columns=self.columns_)


class CalibratedSVM(CalibratedClassifierCV):
    """Platt-scaled probabilities of an SVC (or of a grid search over one) whose
    ranking is the SVC's decision-function ranking.

    Built with ``method="sigmoid", ensemble=False``: the sigmoid is fitted on
    out-of-fold decision values of the inner CV, the SVC is refit on all rows,
    and p = expit(-(a f + b)) is one increasing map of its decision value f when
    a < 0. ``SVC(probability=True)`` (deprecated in scikit-learn 1.9) did the same
    inside libsvm without that guarantee and inverted the ranking on small tables
    (AUC 0.27-0.38).
    """

    def fit(self, X, y, **fit_params):
        super().fit(X, y, **fit_params)
        for cc in self.calibrated_classifiers_:
            for cal in cc.calibrators:
                if cal.a_ > 0:
                    # a > 0 would rank the cases against the SVC's decision function,
                    # whose positive side is class 1 by construction. It happens when
                    # the model is near chance: the pooled out-of-fold decision values
                    # come from models with their own offsets, each mirroring its
                    # fold's class balance, so they can be anti-associated with the
                    # labels (the bias of pooled CV under the null). The slope is
                    # mirrored (its size, small for a weak association, keeps the
                    # probabilities near the class prior) and b moved so that p at the
                    # mean decision value stays as fitted: the ranking is the SVC's.
                    f_mean = float(np.mean(cc.estimator.decision_function(X)))
                    log.info("SVM calibration: sigmoid slope of the wrong sign mirrored")
                    cal.b_ = cal.b_ + 2.0 * cal.a_ * f_mean
                    cal.a_ = -cal.a_
        return self


def make_classifier(name: str, params: dict | None, random_state: int, inner_cv: int = 3):
    """The classifier ``name`` with its ``params``; ``svm`` is a :class:`CalibratedSVM`
    around ``SVC(probability=False)`` whose sigmoid is fitted over ``inner_cv``
    seeded stratified folds."""
    params = dict(params or {})
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        if "penalty" in params:  # deprecated in scikit-learn 1.8: l1_ratio and C say it
            penalty = params.pop("penalty")
            if penalty in (None, "none"):
                params["C"] = np.inf
            elif penalty != "elasticnet":
                params["l1_ratio"] = {"l1": 1.0, "l2": 0.0}[penalty]
        return LogisticRegression(max_iter=5000, random_state=random_state, **params)
    if name == "svm":
        from sklearn.model_selection import StratifiedKFold
        from sklearn.svm import SVC

        params.setdefault("kernel", "rbf")
        cv = StratifiedKFold(n_splits=inner_cv, shuffle=True, random_state=random_state)
        svc = SVC(random_state=random_state, **params)
        return CalibratedSVM(svc, method="sigmoid", cv=cv, ensemble=False)
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        params.setdefault("n_estimators", 300)
        return RandomForestClassifier(random_state=random_state, n_jobs=1, **params)
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(**params)
    if name == "xgboost":
        from xgboost import XGBClassifier

        params.setdefault("n_estimators", 200)
        params.setdefault("max_depth", 3)
        return XGBClassifier(
            random_state=random_state,
            n_jobs=1,
            tree_method="exact",
            eval_metric="logloss",
            **params,
        )
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        params.setdefault("hidden_layer_sizes", (32,))
        params.setdefault("max_iter", 2000)
        return MLPClassifier(random_state=random_state, **params)
    raise ValueError(f"unknown classifier {name!r}")


def build_classification_pipeline(spec: dict, random_state: int, pre_steps=()):
    """Pipeline from a spec like {name: svm, params: {C: 100}, smote: true, grid: {C: [...]}}."""
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    inner = spec.get("inner_cv", 3)
    clf = make_classifier(spec.get("name", "logistic"), spec.get("params"), random_state, inner)
    if spec.get("grid"):
        cv = StratifiedKFold(n_splits=inner, shuffle=True, random_state=random_state)
        if isinstance(clf, CalibratedSVM):  # search the SVC inside: grid names stay C, gamma
            clf.set_params(
                estimator=GridSearchCV(
                    clf.estimator, spec["grid"], cv=cv, scoring="roc_auc", n_jobs=1
                )
            )
        else:
            clf = GridSearchCV(clf, spec["grid"], cv=cv, scoring="roc_auc", n_jobs=1)
    steps = list(pre_steps) + [
        ("impute", DataFrameStep(SimpleImputer(strategy="median"))),
        ("scale", DataFrameStep(StandardScaler())),
    ]
    if spec.get("smote"):
        steps.append(("smote", SMOTE(random_state=random_state, k_neighbors=3)))
    steps.append(("model", clf))
    return Pipeline(steps)


def survival_columns(model, X: pd.DataFrame, times) -> pd.DataFrame:
    """Predicted S(t | x) of a fitted survival pipeline at ``times``: one column
    ``S_{t}`` per time point, one row per row of ``X`` (for the Brier score)."""
    if times is None or not len(X):
        return pd.DataFrame(index=range(len(X)))
    Z = model[:-1].transform(X)
    sf = model.steps[-1][1].survival_function(Z, list(times))  # times x cases
    return pd.DataFrame(
        sf.to_numpy().T, columns=[f"S_{float(t):.6g}" for t in sf.index], index=range(len(X))
    )


def _prediction_part(model, Xt: pd.DataFrame, yt, surv_times=None) -> pd.DataFrame:
    """Outcome + prediction columns of held-out rows ``Xt`` (a fitted ``model``):
    y_true, y_prob (binary) or time, event, score (+ ``S_{t}`` columns, survival)."""
    if isinstance(yt, pd.DataFrame):
        part = pd.DataFrame(
            {
                "time": yt["time"].to_numpy(),
                "event": yt["event"].to_numpy(),
                "score": model.predict(Xt),
            }
        )
        if surv_times is not None:
            part = pd.concat([part, survival_columns(model, Xt, surv_times)], axis=1)
        return part
    return pd.DataFrame({"y_true": np.asarray(yt), "y_prob": model.predict_proba(Xt)[:, 1]})


def cross_validated_predictions(
    pipeline,
    X: pd.DataFrame,
    y,
    n_splits: int = 5,
    n_repeats: int = 1,
    random_state: int = 0,
    surv_times=None,
    folds: pd.Series | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Out-of-fold predictions: the whole pipeline is cloned and refit per fold
    (``n_jobs`` folds at once: :func:`outer_folds`).

    Binary y -> columns y_true, y_prob; survival y (time, event) -> time, event, score
    (+ ``S_{t}`` columns of the predicted survival at ``surv_times`` when given).
    ``folds``: a fixed fold label per row of ``X`` (a published split): each label's
    rows are held out once, in natural label order (``n_splits``, ``n_repeats`` and
    ``random_state`` unused); else repeated stratified k-fold.
    """
    from sklearn.model_selection import RepeatedStratifiedKFold

    survival = isinstance(y, pd.DataFrame)
    strat = y["event"].to_numpy(int) if survival else np.asarray(y).astype(int)
    if folds is not None:
        splits = fixed_folds(folds.reindex(X.index))
        n_splits = len(splits)
    else:
        n_splits = int(max(2, min(n_splits, np.bincount(strat).min())))
        cv = RepeatedStratifiedKFold(
            n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
        )
        splits = list(cv.split(X, strat))
    rows = []
    preds = outer_folds(pipeline, X, y, splits, surv_times, n_jobs, "CV")
    for i, ((_, te), pred) in enumerate(zip(splits, preds, strict=True)):
        if isinstance(pred, CaseError):
            raise pred
        Xt = X.iloc[te]
        part = pd.DataFrame({"case_id": Xt.index, "repeat": i // n_splits, "fold": i % n_splits})
        rows.append(pd.concat([part, pred], axis=1))
    return pd.concat(rows).sort_values(["repeat", "case_id"]).reset_index(drop=True)


class _Records(logging.Handler):
    """Log records of one outer fold run in a worker process (which has no job log)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.rows: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.rows.append((record.name, record.levelno, record.getMessage()))


def _fold_fit_predict(pipeline, X, y, tr, te, surv_times, capture: bool):
    """One outer fold: a clone of ``pipeline`` fit on rows ``tr``, predictions for rows
    ``te`` (None and the reason when the chain cannot map them: :class:`CaseError`).
    With ``capture`` (a worker process) the fold's log records are returned too."""
    handler = _Records() if capture else None
    root = logging.getLogger()
    if handler is not None:
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
    try:
        model = clone(pipeline).fit(X.iloc[tr], y.iloc[tr])
        out = _prediction_part(model, X.iloc[te], y.iloc[te], surv_times), None
    except CaseError as err:
        out = None, str(err)
    finally:
        if handler is not None:
            root.removeHandler(handler)
    return (*out, handler.rows if handler is not None else [])


def outer_folds(pipeline, X, y, splits, surv_times=None, n_jobs: int = 1, what: str = "CV"):
    """Predictions of each (train, test) split of ``splits``, in order: the whole
    pipeline cloned and refit per split. ``n_jobs`` > 1 runs the splits in that many
    worker processes (a searched model then searches one fold per process, which keeps
    both cores busy where its 3 inner folds would not); each fold's log lines reach the
    job log in fold order, after it, with a progress line. A fold whose held-out rows
    the fitted chain cannot map (:class:`CaseError`) yields None (callers skip or
    raise). Same results whatever ``n_jobs``."""
    from joblib import Parallel, delayed

    n_jobs = max(1, min(int(n_jobs), len(splits)))
    capture = n_jobs > 1
    jobs = (
        delayed(_fold_fit_predict)(pipeline, X, y, tr, te, surv_times, capture) for tr, te in splits
    )
    out = []
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    for i, (pred, err, records) in enumerate(results):
        for name, level, msg in records:
            logging.getLogger(name).log(level, "%s", msg)
        if capture:
            log.info("%s: outer fold %d/%d done", what, i + 1, len(splits))
        out.append(pred if err is None else CaseError(err))
    return out


def fixed_folds(labels: pd.Series) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row positions for each fold label, labels in natural order."""
    from radstudy.tableio import natural

    if labels.isna().any():
        case = labels.index[labels.isna().to_numpy()][0]
        raise CaseError(f"case {case}: no fold in the fold column (evaluation.cv.fold_column)")
    text = labels.astype(str).to_numpy()
    names = natural(set(text))
    if len(names) < 2:
        raise CaseError(f"the fold column gives one fold only ({names[0]}); CV needs two")
    return [(np.flatnonzero(text != f), np.flatnonzero(text == f)) for f in names]


def leave_one_center_out_predictions(
    pipe, X: pd.DataFrame, y, center_col: str = "center", surv_times=None, n_jobs: int = 1
) -> pd.DataFrame:
    """Leave-one-center-out predictions: the whole pipeline is refit without each center.

    For each center of ``X[center_col]`` (sorted) a clone of ``pipe`` is fit on
    the other centers' rows and predicts the held-out center's rows. Same columns as :func:`cross_validated_predictions` (``repeat`` 0, ``fold`` =
    the held-out center, so per-fold summaries become per-center ones) plus
    ``center``. ``X`` keeps ``center_col`` (pre-steps such as ComBat use it). A
    center is skipped, with a warning, when the other centers hold a single class
    (binary) or no event (survival), or when the fitted chain cannot map it
    (:class:`CaseError`, e.g. too few rows for ComBat's unseen-batch estimate).
    """
    survival = isinstance(y, pd.DataFrame)
    centers = X[center_col].to_numpy()
    strat = y["event"].to_numpy(int) if survival else np.asarray(y).astype(int)
    rows, runs = [], []
    for center in sorted(pd.unique(centers)):
        te, tr = np.flatnonzero(centers == center), np.flatnonzero(centers != center)
        if (survival and strat[tr].sum() == 0) or (not survival and len(set(strat[tr])) < 2):
            what = (
                "no row"
                if not len(tr)
                else "no event"
                if survival
                else f"one class only ({int(strat[tr][0])})"
            )
            log.warning(
                "leave-one-center-out: without center %s the rest has %s; center skipped",
                center,
                what,
            )
            continue
        runs.append((center, (tr, te)))
    splits = [s for _, s in runs]
    preds = outer_folds(pipe, X, y, splits, surv_times, n_jobs, "leave-one-center-out")
    for (center, (_, te)), pred in zip(runs, preds, strict=True):
        if isinstance(pred, CaseError):
            log.warning("leave-one-center-out: center %s skipped: %s", center, pred)
            continue
        Xt = X.iloc[te]
        part = pd.DataFrame({"case_id": Xt.index, "center": center, "repeat": 0, "fold": center})
        rows.append(pd.concat([part, pred], axis=1))
    if not rows:
        cols = ["time", "event", "score"] if survival else ["y_true", "y_prob"]
        return pd.DataFrame(columns=["case_id", "center", "repeat", "fold", *cols])
    return pd.concat(rows).sort_values(["repeat", "case_id"]).reset_index(drop=True)


def _final_features(pipeline) -> list[str]:
    """Column names entering the final estimator (after every pre-step)."""
    cols: list[str] = []
    for _, step in pipeline.steps[:-1]:
        cols = getattr(step, "columns_", cols)
    return list(cols)


def model_card(pipeline, X: pd.DataFrame, y, spec: dict) -> dict:
    """What a reader of the model needs: inputs, selected features + weights, versions."""
    final = pipeline.steps[-1][1]
    if isinstance(final, CalibratedSVM):  # the SVC (or its grid search) refit on all rows
        final = final.calibrated_classifiers_[0].estimator
    est = getattr(final, "best_estimator_", final)
    feats = _final_features(pipeline)
    weights = None
    if hasattr(est, "coef_"):
        weights = np.asarray(est.coef_).ravel()
    elif hasattr(est, "feature_importances_"):
        weights = np.asarray(est.feature_importances_)
    elif hasattr(est, "params_"):
        weights = np.asarray(est.params_)
    selected = [
        {"feature": f, "weight": None if weights is None else float(weights[i])}
        for i, f in enumerate(feats)
    ]
    if hasattr(final, "selected_features_"):  # a search (radstudy.search): its choice
        w = final.feature_weights_  # {} for an ensemble or a model without weights
        selected = [{"feature": f, "weight": w.get(f)} for f in final.selected_features_]
    survival = isinstance(y, pd.DataFrame)
    card = {
        "groups": list(spec.get("groups", [])),
        "spec": spec,
        "n_train": int(len(X)),
        "n_events": int(y["event"].sum()) if survival else int(np.sum(y)),
        "n_features_in": int(X.shape[1] - ("center" in X.columns)),
        "selected_features": selected,
        "steps": [name for name, _ in pipeline.steps],
        "libraries": {
            p: md.version(p)
            for p in (
                "scikit-learn",
                "imbalanced-learn",
                "neuroCombat",
                "lifelines",
                "pyradiomics-bhklab",
                "numpy",
                "pandas",
            )
        },
    }
    if hasattr(final, "best_params_"):
        card["best_params"] = final.best_params_
    steps = dict(pipeline.steps)
    lasso = steps.get("lasso", steps.get("cox_lasso"))
    if lasso is not None and hasattr(lasso, "path_"):
        path = lasso.path_.fillna(0.0)
        ever = path.columns[(path != 0).any()]
        top = sorted(ever, key=lambda c: (-path[c].abs().max(), c))[:25]
        cox = path.index.name == "penalizer"  # Cox LASSO (survival) vs L1 logistic
        card["lasso"] = {
            "param": "penalizer (lambda)" if cox else "C (inverse of lambda)",
            "cv_metric": "CV negative partial log-likelihood" if cox else "CV log-loss",
            "grid": [float(c) for c in path.index],
            "cv_mean": [float(v) for v in lasso.cv_error_["mean"]],
            "cv_sd": [float(v) for v in lasso.cv_error_["sd"]],
            "path": {c: [float(v) for v in path[c]] for c in top},
        }
    return card
