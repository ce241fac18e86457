"""Cohort stages of the workflow, one function per rule, over files.

Each function reads its inputs, calls the estimators of the package, and
writes its outputs deterministically. The fit discipline (DESIGN.md) is built
in: fitting functions read only training rows; the model is one pipeline
(group selection -> ComBat -> ICC filter -> selection -> scaler -> [SMOTE] ->
classifier | Cox) so cross-validation refits the whole chain in every fold.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from radstudy import __version__
from radstudy.errors import CaseError
from radstudy.tableio import natural as tables_natural
from radstudy.tables import read_column, read_outcomes, read_tables

log = logging.getLogger(__name__)
FLOAT = "%.6g"


# ----------------------------------------------------------------------------- helpers
def _write_tsv(df: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, float_format=FLOAT, lineterminator="\n")


def _write_json(obj: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _dump(obj, path: str | Path) -> None:
    """joblib dump with a fixed protocol and no compression: same object, same bytes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(obj, path, protocol=4)


def _endpoint(cfg: dict, endpoint: str) -> dict:
    return cfg["endpoints"][endpoint]


def _model_spec(cfg: dict, endpoint: str, model: str) -> dict:
    return cfg["models"][endpoint][model]


def _seed(cfg: dict, *salt: str) -> int:
    """Per-step seed derived from the master seed and a name (stable across runs)."""
    import zlib

    return (int(cfg["seed"]) + zlib.crc32("/".join(salt).encode())) % (2**31 - 1)


def training_xy(
    tables: list[str], sheets: list[str], ep: dict
) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame]:
    """Training rows (split == train) with a known outcome: X (center + features), y."""
    X = read_tables(tables)
    X = X[X["split"] == "train"].drop(columns="split")
    y = read_outcomes(sheets, ep).reindex(X.index)
    known = y.notna() if isinstance(y, pd.Series) else y.notna().all(axis=1)
    gone = tables_natural(list(X.index[~known.to_numpy()]))
    if gone:
        log.warning(
            "%d training row(s) without outcome left out: %s",
            len(gone),
            ", ".join(gone[:10]) + (" ..." if len(gone) > 10 else ""),
        )
    X, y = X[known], y[known]
    X.attrs["no_outcome"] = gone
    if isinstance(y, pd.Series):
        y = y.astype(int)
    else:
        y = y.astype({"time": float, "event": int})
    return X, y


def _robust(path: str | None) -> list[str] | None:
    if path is None:
        return None
    text = Path(path).read_text().split()
    return None if text == ["ALL"] else text


# ------------------------------------------------------------------------ harmonisation
def combat_from_cfg(cfg: dict, groups: list[str] | None = None):
    """ComBat per feature group (harmonization.groups) from the harmonization block;
    with ``groups`` (a model's), the groups not among them are left as they are."""
    from radstudy.harmonize import GroupComBat

    h = cfg["harmonization"] if "harmonization" in cfg else cfg
    modes = {g: m if groups is None or g in groups else "none" for g, m in h["groups"].items()}
    return GroupComBat(
        groups=tuple(sorted(modes.items())),
        batch_col="center",
        covariate_cols=tuple(f"clinical__{c}" for c in h["covariates"]),
        parametric=h["parametric"],
        eb=h["eb"],
        mean_only=h["mean_only"],
        ref_batch=h["ref_batch"] or None,
        min_new_batch=h["min_new_batch"],
        tie_threshold=h["tie_threshold"],
        tied=h["tied"],
    )


def harmonized_groups(hcfg: dict, groups: list[str]) -> list[str]:
    """The groups among ``groups`` that ComBat changes (none when harmonisation is off)."""
    if not hcfg["enabled"]:
        return []
    return [g for g in groups if hcfg["groups"].get(g, "none") != "none"]


def prevalence_by_center(y: pd.Series, center: pd.Series, alpha: float) -> dict[str, object] | None:
    """Outcome prevalence per training center and a test that it is the same in all
    (Fisher's exact test for two centers, else chi-square); None with < 2 centers."""
    from scipy.stats import chi2_contingency, fisher_exact

    y = pd.to_numeric(y, errors="coerce")
    known = y.isin([0, 1])
    y, center = y[known].astype(int), center[known].astype(str)
    if center.nunique() < 2 or y.nunique() < 2:
        return None
    table = pd.crosstab(center, y).reindex(columns=[0, 1], fill_value=0).sort_index()
    if len(table) == 2:
        test, p = "Fisher's exact test", float(fisher_exact(table.to_numpy())[1])
    else:
        test, p = "chi-square test", float(chi2_contingency(table.to_numpy())[1])
    return {
        "prevalence": {str(c): float(r[1] / r.sum()) for c, r in table.iterrows()},
        "n": {str(c): int(r.sum()) for c, r in table.iterrows()},
        "test": test,
        "p": p,
        "alpha": float(alpha),
        "differs": bool(p < alpha),
    }


def fit_combat(
    tables: list[str],
    hcfg: dict,
    out_model: str,
    out_summary: str,
    sheets: list[str] | None = None,
    endpoints: dict[str, dict] | None = None,
    seed: int = 0,
    icfg: dict | None = None,
) -> None:
    """Fit ComBat on the training rows of the training centers; save it frozen.

    The summary (``out_summary``) also holds: the features ComBat left unharmonised or
    dropped, with their reason; how well a linear model and a random forest (seeded
    by ``seed``) tell the training centers apart before and after; and, per binary
    endpoint (``endpoints``: name -> endpoint spec, read from ``sheets``), whether the
    outcome prevalence differs between the training centers (a logged warning when it
    does: ComBat on the center alone then also removes outcome signal).
    """
    from radstudy.harmonize import TIED_REASONS, center_predictability
    from radstudy.impute import Imputation, imputation_from_cfg

    X = read_tables(tables)
    X = X[X["split"] == "train"].drop(columns="split")
    # gaps filled as the models fill them (fitted on these training rows), since
    # ComBat takes no gaps; ``icfg`` None: the imputation block's defaults
    imputer = imputation_from_cfg(icfg) if icfg else Imputation()
    X = imputer.fit(X).transform(X)
    combat = combat_from_cfg({"harmonization": hcfg})
    if hcfg["enabled"]:
        combat.fit(X)
    _dump({"imputation": imputer, "combat": combat}, out_model)
    feats = [c for c in X.columns if c != "center" and not c.startswith("clinical__")]
    summary = {
        "enabled": bool(hcfg["enabled"]),
        "training_rows": int(len(X)),
        "centers": {str(k): int(v) for k, v in X["center"].value_counts().sort_index().items()},
        "n_features": len(feats),
        "settings": {k: hcfg.get(k) for k in sorted(hcfg)},
    }
    if hcfg["enabled"]:
        skipped = combat.skipped_features_
        counts: dict[str, int] = {}
        for why in skipped.values():
            counts[why] = counts.get(why, 0) + 1
        summary["harmonized_groups"] = combat.modes()  # mode -> groups (none left out)
        summary["n_harmonized"] = len(combat.features_)
        summary["not_harmonized"] = {
            "action": {
                w: ("dropped" if hcfg["tied"] == "drop" and w in TIED_REASONS else "passed through")
                for w in sorted(counts)
            },
            "counts": dict(sorted(counts.items())),
            "features": {c: skipped[c] for c in sorted(skipped)},
            "tie_share": {c: combat.tie_share_[c] for c in sorted(combat.tie_share_)},
        }
    if hcfg["enabled"] and X["center"].nunique() > 1:
        H = combat.transform(X)
        after = [c for c in feats if c in H.columns]
        pred: dict[str, dict[str, float]] = {}
        for model in ("linear", "forest"):
            pred[model] = {
                "before": center_predictability(X[feats], X["center"], seed=seed, model=model),
                "after": center_predictability(H[after], X["center"], seed=seed, model=model),
            }
        summary["center_predictability"] = pred
        summary["center_auc_before"] = pred["linear"]["before"]
        summary["center_auc_after"] = pred["linear"]["after"]
    if sheets and endpoints and X["center"].nunique() > 1:
        summary["prevalence"] = {}
        for name, spec in sorted(endpoints.items()):
            if spec["type"] != "binary":
                continue
            y = read_outcomes(sheets, spec).reindex(X.index)
            res = prevalence_by_center(y, X["center"], hcfg["prevalence_alpha"])
            if res is None:
                continue
            summary["prevalence"][name] = res
            if res["differs"]:
                log.warning("%s", prevalence_line(name, res))
    _write_json(summary, out_summary)


def prevalence_line(endpoint: str, res: dict) -> str:
    """One line saying that (and how) an endpoint's prevalence differs by center."""
    per = ", ".join(
        f"{c} {100 * v:.0f}% of {res['n'][c]}" for c, v in sorted(res["prevalence"].items())
    )
    return (
        f"endpoint {endpoint}: outcome prevalence differs between training centers ({per}; "
        f"{res['test']} p = {res['p']:.2g} < {res['alpha']:g}): ComBat on the center alone "
        "also removes part of the outcome signal; compare the leave-one-center-out results "
        "with and without harmonisation"
    )


def harmonize_center(model: str, table: str, out_table: str) -> None:
    """Map one center's rows onto the frozen reference (unseen centers included)."""
    fitted = joblib.load(model)
    combat = fitted["combat"]
    X = pd.read_parquet(table)
    split = X.pop("split")
    X = fitted["imputation"].transform(X)
    if getattr(combat, "is_fitted_", None) is False or not hasattr(combat, "n_features_in_"):
        H = X.drop(columns="center")  # harmonisation disabled: identity
    else:
        try:
            H = combat.transform(X)
        except CaseError as err:  # an unseen center too small to be mapped
            log.warning("%s; its rows are left out of the harmonised table", err)
            H, split = X.drop(columns="center").iloc[:0], split.iloc[:0]
            X = X.iloc[:0]
    H.insert(0, "split", split)
    H.insert(0, "center", X["center"])
    H.to_parquet(out_table)


# ---------------------------------------------------------------------- reproducibility
def compute_icc(
    tables: list[str],
    sheets: list[str],
    rcfg: dict,
    readers: list[str],
    repeats: dict[str, str],
    out_icc: str,
    out_robust: str,
) -> None:
    """Inter-reader (and intra-reader repeat) ICC on the training cases only."""
    from radstudy.reproducibility import inter_intra, robust_features

    sheet = pd.concat([pd.read_csv(s, sep="\t", dtype={"case_id": str}) for s in sheets])
    train = set(sheet.loc[sheet["split"] == "train", "case_id"])
    long = pd.concat([pd.read_parquet(t) for t in tables])
    long = long[long["case_id"].isin(train)]
    experts = [r for r in readers if r not in repeats]
    icc = inter_intra(long, readers=experts, repeat_pairs=repeats, icc_type=rcfg["icc_type"])
    _write_tsv(icc, out_icc)
    # the agreement kinds the config asks for (inter and/or intra): a feature must
    # reach the threshold in every row of those kinds
    rows = icc[icc["kind"].isin(rcfg["kinds"])]
    if rcfg["enabled"] and len(rows):
        keep = robust_features(rows, threshold=rcfg["threshold"])
        log.info(
            "ICC filter (%s): %d of %d features kept",
            "+".join(rcfg["kinds"]),
            len(keep),
            rows["feature"].nunique(),
        )
        Path(out_robust).write_text("\n".join(sorted(keep)) + "\n")
    else:
        Path(out_robust).write_text("ALL\n")


# ------------------------------------------------------------------------------ models
def build_pipeline(
    spec: dict, cfg: dict, ep: dict, robust: list[str] | None, seed: int, n_jobs: int = 1
):
    """The whole learned chain of one model as one (imblearn) Pipeline. A model with
    a ``search`` block ends in one :class:`radstudy.search.ModelSearch` (selection ..
    classifier / Cox chosen by nested search; its inner folds on ``n_jobs`` processes)."""
    from radstudy.impute import imputation_from_cfg
    from radstudy.models import ColumnGroupSelector, build_classification_pipeline
    from radstudy.reproducibility import ICCFilter
    from radstudy.selection import build_selector

    groups = list(spec["groups"])
    # ComBat per group (harmonization.groups); its covariates reach it even when the
    # model does not see the clinical group, and are dropped again after it
    harmonized = harmonized_groups(cfg["harmonization"], groups)
    harmonize = bool(harmonized)
    with_covs = any(cfg["harmonization"]["groups"][g] == "combat_covariates" for g in harmonized)
    covs = [f"clinical__{c}" for c in cfg["harmonization"]["covariates"]] if with_covs else []
    covs = [c for c in covs if "clinical" not in groups]
    keep = ("center", *covs)
    pre = [("groups", ColumnGroupSelector(groups=tuple(groups), keep_cols=keep))]
    # gaps: features missing too often dropped, the rest filled (training rows of
    # this fit only), before ComBat, which cannot take gaps
    pre.append(("impute_missing", imputation_from_cfg(cfg["imputation"])))
    if harmonize:
        pre.append(("combat", combat_from_cfg(cfg, groups)))
        if covs:
            drop_covs = ColumnGroupSelector(groups=(*groups, "missing"), keep_cols=())
            pre.append(("drop_covariates", drop_covs))
    else:
        pre.append(("drop_center", ColumnGroupSelector(groups=(*groups, "missing"), keep_cols=())))
    if robust is not None and "radiomics" in groups:
        pre.append(("icc", ICCFilter(keep=robust)))
    if "search" in spec:  # the search replaces selection .. classifier / Cox
        from sklearn.pipeline import Pipeline

        from radstudy.search import ModelSearch

        return Pipeline([*pre, ("model", ModelSearch.from_spec(spec["search"], seed, n_jobs))])
    # a model's own selection steps replace the top-level ones (config.schema.yaml)
    pre += build_selector(spec["selection"] if "selection" in spec else cfg["selection"], seed)
    if ep["type"] == "binary":
        return build_classification_pipeline(
            {**spec["classifier"], "smote": spec["smote"]},
            random_state=seed,
            pre_steps=pre,
        )
    from radstudy.survival import build_survival_pipeline

    return build_survival_pipeline(spec["cox"], random_state=seed, pre_steps=pre)


def fit_model(
    tables: list[str],
    sheets: list[str],
    robust_path: str,
    endpoint: str,
    model: str,
    cfg: dict,
    out_model: str,
    out_card: str,
    out_selection: str,
    out_search: str | None = None,
    n_jobs: int = 1,
) -> None:
    """Fit one model's pipeline on the training rows; write model, card, selection and
    (``out_search``) the search history (empty for a model without a search)."""
    from radstudy.models import model_card
    from radstudy.search import ModelSearch, empty_history

    ep, spec = _endpoint(cfg, endpoint), _model_spec(cfg, endpoint, model)
    X, y = training_xy(tables, sheets, ep)
    seed = _seed(cfg, endpoint, model)
    pipe = build_pipeline(spec, cfg, ep, _robust(robust_path), seed, n_jobs)
    pipe.fit(X, y)
    final = pipe.steps[-1][1]
    searched = isinstance(final, ModelSearch)
    card = model_card(pipe, X, y, spec)
    card.update(
        {
            "endpoint": endpoint,
            "endpoint_spec": ep,
            "model": model,
            "study": cfg["study"]["name"],
            "radstudy_version": __version__,
            "python": platform.python_version(),
            "training_centers": sorted(X["center"].unique()),
            # no row is lost silently: training rows left out for a missing outcome
            "rows_without_outcome": X.attrs.get("no_outcome", []),
        }
    )
    if "impute_missing" in pipe.named_steps:
        card["imputation"] = pipe.named_steps["impute_missing"].summary()
    if searched:
        card["search"] = final.summary(seed)
    if ep["type"] == "survival":
        from radstudy.survival import nomogram

        score = pd.Series(pipe.predict(X), index=X.index)
        card["cutoff"] = float(np.median(score))  # learned on training rows only
        card["surv_times"] = [float(t) for t in surv_times(y)]
        card.update(clinical_cox(score, X, y))
        if not searched:  # a nomogram needs the Cox model's linear predictor
            Z = pipe[:-1].transform(X)  # the Cox model's inputs (scaled training rows)
            t_point = float(np.median(y.loc[y["event"] == 1, "time"]))
            nomo = nomogram(pipe.steps[-1][1], Z, t_point)
            card["nomogram"] = {
                "time_point": t_point,
                "points": nomo["points"].to_dict(orient="list"),
                "total": nomo["total"].to_dict(orient="list"),
            }
    _dump(pipe, out_model)
    if out_search is not None:
        history = final.history_ if searched else empty_history()
        Path(out_search).parent.mkdir(parents=True, exist_ok=True)
        history.to_parquet(out_search, index=False)
    _write_json(card, out_card)
    sel = pd.DataFrame(card.get("selected_features", []))
    _write_tsv(sel, out_selection)


def clinical_cox(score: pd.Series, X: pd.DataFrame, y: pd.DataFrame) -> dict:
    """Multivariable Cox of the model's risk score (per SD) with the clinical columns,
    and the proportional-hazards test (Schoenfeld residuals), on the training rows
    with complete data. Returns card entries (tables as column lists)."""
    from lifelines.exceptions import ConvergenceError

    from radstudy.survival import multivariable_cox, ph_test

    clinical = [c for c in X.columns if c.startswith("clinical__") and X[c].nunique() > 1]
    df = X[clinical].copy()
    df.insert(0, "model_score_per_sd", (score - score.mean()) / (score.std() or 1.0))
    df["time"], df["event"] = y["time"], y["event"]
    df = df.dropna()
    covs = [c for c in df.columns if c not in ("time", "event")]
    out: dict = {"multivariable_cox_n": int(len(df))}
    try:
        out["multivariable_cox"] = multivariable_cox(df, covs, "time", "event").to_dict(
            orient="list"
        )
        out["ph_test"] = ph_test(df, covs, "time", "event").to_dict(orient="list")
    except (ConvergenceError, ValueError, np.linalg.LinAlgError) as err:
        log.warning("multivariable Cox on the training rows failed: %s", err)
        out["multivariable_cox_error"] = str(err).splitlines()[0]
    return out


def cross_validate_model(
    tables: list[str],
    sheets: list[str],
    robust_path: str,
    endpoint: str,
    model: str,
    cfg: dict,
    out_predictions: str,
    n_jobs: int = 1,
    fitted_model: str | None = None,
) -> None:
    """Out-of-fold predictions on training rows; the whole chain is refit per fold (a
    searched model searches again inside every fold: nested CV). The outer folds run
    ``n_jobs`` at a time, each on one core (:func:`radstudy.models.outer_folds`).

    The shuffled-label null check (``cv_shuffled``) refits the same chain on permuted
    labels. For a searched model it refits the configurations that the final model
    (``fitted_model``, rule fit_model's output) chose on the real labels, instead of
    searching again on noise: the check is of the chain (imputation, ComBat, feature
    ranking refit per fold), whose leaks it would show; the search's own nesting is
    what the outer CV above does."""
    from radstudy.models import cross_validated_predictions, leave_one_center_out_predictions

    ep, spec = _endpoint(cfg, endpoint), _model_spec(cfg, endpoint, model)
    X, y = training_xy(tables, sheets, ep)
    seed = _seed(cfg, endpoint, model)
    pipe = build_pipeline(spec, cfg, ep, _robust(robust_path), seed, 1)
    cv = cfg["evaluation"]["cv"]
    folds = read_column(sheets, cv["fold_column"]) if cv["fold_column"] else None
    times = surv_times(y) if ep["type"] == "survival" else None
    runs = [("cv", y, pipe)]
    if cfg["evaluation"]["shuffled_null"] and ep["type"] == "binary":
        rng = np.random.default_rng(seed)
        null_y = pd.Series(rng.permutation(y.values), index=y.index)
        runs.append(("cv_shuffled", null_y, null_chain(pipe, spec, fitted_model)))
    frames = []
    for cohort, yy, chain in runs:
        pred = cross_validated_predictions(
            chain,
            X,
            yy,
            n_splits=cv["n_splits"],
            n_repeats=cv["n_repeats"],
            random_state=seed,
            surv_times=times,
            folds=folds,
            n_jobs=n_jobs,
        )
        pred.insert(0, "cohort", cohort)
        frames.append(pred)
    if cfg["evaluation"]["loco"] and X["center"].nunique() > 1:
        # leave-one-center-out over the training centers: pooled ("loco", the mean of
        # per-center AUCs) and per held-out center ("loco:{center}"); with harmonisation
        # on, also without it ("loco_unharmonized", "loco_unharmonized:{center}")
        loco_runs = [("loco", pipe)]
        if harmonized_groups(cfg["harmonization"], list(spec["groups"])):
            # the same without harmonisation: which of the two generalises to new centers
            plain = {**cfg, "harmonization": {**cfg["harmonization"], "enabled": False}}
            unharmonized = build_pipeline(spec, plain, ep, _robust(robust_path), seed, 1)
            loco_runs.append(("loco_unharmonized", unharmonized))
        for name, chain in loco_runs:
            loco = leave_one_center_out_predictions(chain, X, y, surv_times=times, n_jobs=n_jobs)
            loco = loco.drop(columns="center")
            per = loco.assign(cohort=f"{name}:" + loco["fold"].astype(str), fold=np.nan)
            frames += [loco.assign(cohort=name), per]
    out = pd.concat(frames).sort_values(["cohort", "repeat", "case_id"])
    _write_tsv(out, out_predictions)


def null_chain(pipe, spec: dict, fitted_model: str | None):
    """The chain the shuffled-label check refits: ``pipe`` itself, or for a searched
    model ``pipe`` with its search fixed to the configurations the fitted final model
    chose (see :func:`cross_validate_model`)."""
    from sklearn.base import clone

    if "search" not in spec:
        return pipe
    if fitted_model is None:
        raise ValueError("a searched model's null check needs its fitted model (fit_model)")
    chosen = joblib.load(fitted_model).steps[-1][1].member_params_
    return clone(pipe).set_params(model__fixed_params=[dict(p) for p in chosen])


def surv_times(y: pd.DataFrame) -> np.ndarray:
    """Time grid of the predicted survival columns: S(0) and 24 points covering the
    Brier-score time points (training event-time quartiles) with a 5% margin."""
    from radstudy.evaluation import evaluation_times

    t = evaluation_times(y["time"], y["event"])
    return np.concatenate([[0.0], np.linspace(0.95 * t[0], 1.05 * t[-1], 24)])


def predict_center(
    model: str, card: str, table: str, sheet: str, endpoint: str, cfg: dict, out: str
) -> None:
    """Predictions of the frozen model for every row of one center."""
    pipe = joblib.load(model)
    card_d = json.loads(Path(card).read_text())
    ep = _endpoint(cfg, endpoint)
    X = pd.read_parquet(table)
    split = X.pop("split")
    y = read_outcomes([sheet], ep).reindex(X.index)
    out_df = pd.DataFrame({"case_id": X.index, "center": X["center"].values, "split": split.values})
    try:
        if ep["type"] == "binary":
            out_df["y_true"] = y.values
            out_df["y_prob"] = pipe.predict_proba(X)[:, 1] if len(X) else []
        else:
            out_df["time"] = y["time"].values
            out_df["event"] = y["event"].values
            score = pipe.predict(X) if len(X) else np.array([])
    except CaseError as err:  # an unseen center too small to be mapped by ComBat
        log.warning("%s; the center gets no predictions", err)
        cols = ["y_true", "y_prob"] if ep["type"] == "binary" else ["time", "event", "score"]
        out_df = out_df.iloc[:0].assign(**{c: [] for c in cols})
        if ep["type"] == "survival":
            out_df["risk_group"] = []
        _write_tsv(out_df, out)
        return
    if ep["type"] == "survival":
        from radstudy.models import survival_columns

        out_df["score"] = score
        out_df["risk_group"] = np.where(score > card_d["cutoff"], "high", "low")
        if card_d.get("surv_times"):
            S = survival_columns(pipe, X, card_d["surv_times"])
            out_df = pd.concat([out_df, S.set_index(out_df.index)], axis=1)
    _write_tsv(out_df.sort_values("case_id"), out)


def _cohort_label(row) -> str:
    if row["split"] == "external":
        return f"external:{row['center']}"
    return row["split"]


def evaluate_model(
    cv_path: str,
    card: str,
    predictions: list[str],
    endpoint: str,
    cfg: dict,
    out_metrics: str,
    out_curves: str,
) -> None:
    """Metrics with 95% CIs per cohort (cv, train, test, each external center, external)."""
    from radstudy import evaluation as ev

    ep = _endpoint(cfg, endpoint)
    card_d = json.loads(Path(card).read_text())
    cv = pd.read_csv(cv_path, sep="\t", dtype={"case_id": str})
    pred = pd.concat([pd.read_csv(p, sep="\t", dtype={"case_id": str}) for p in predictions])
    pred["cohort"] = pred.apply(_cohort_label, axis=1)
    ext = pred[pred["split"] == "external"].assign(cohort="external")
    pred = pd.concat([pred, ext]) if ext["center"].nunique() > 1 else pred
    n_boot = cfg["evaluation"]["bootstrap"]
    seed = _seed(cfg, endpoint, "evaluate")
    folds = [c for c in ("repeat", "fold") if c in cv.columns]  # per-fold / per-center metrics
    if ep["type"] == "binary":
        thr_cfg = cfg["evaluation"]["threshold"]
        oof = cv[cv["cohort"] == "cv"]
        threshold = (
            ev.youden_threshold(oof["y_true"], oof["y_prob"])
            if thr_cfg == "youden"
            else float(thr_cfg)
        )
        table = pd.concat([cv, pred[["case_id", "cohort", "y_true", "y_prob"]]])
        metrics, curves = ev.evaluate_binary(
            table.reindex(columns=["case_id", "cohort", "y_true", "y_prob", *folds]),
            threshold=threshold,
            n_boot=n_boot,
            seed=seed,
        )
    else:
        cols = ["case_id", "cohort", "time", "event", "score"]
        s_cols = [c for c in cv.columns if c.startswith("S_")]
        if not all(c in pred.columns for c in s_cols):
            s_cols = []  # predicted survival missing somewhere: no Brier score
        table = pd.concat([cv[cols + folds + s_cols], pred[cols + s_cols]]).reset_index(drop=True)
        surv = None
        if s_cols:
            surv = table[s_cols].set_axis([float(c[2:]) for c in s_cols], axis=1)
            table = table.drop(columns=s_cols)
        metrics, curves = ev.evaluate_survival(
            table,
            cutoff=card_d["cutoff"],
            n_boot=n_boot,
            seed=seed,
            train_cohort="train",
            surv=surv,
        )
    _null_check(metrics, endpoint, card_d.get("model", Path(cv_path).parent.name), cfg)
    _write_tsv(metrics, out_metrics)
    curves.to_parquet(out_curves)


def _null_check(metrics: pd.DataFrame, endpoint: str, model: str, cfg: dict) -> None:
    """Log the shuffled-label check; with ``evaluation.fail_on_null`` exit non-zero
    (one line naming endpoint, model, shuffled AUC and band) when it fails."""
    m = metrics.pivot_table(index="cohort", columns="metric", values="value", aggfunc="first")
    if "null_check_pass" not in m.columns:
        return
    for cohort, r in m[m["null_check_pass"].notna()].iterrows():
        msg = (
            f"null check: endpoint {endpoint}, model {model}: {cohort} AUC {r['auc']:.3f} "
            f"{'inside' if r['null_check_pass'] else 'OUTSIDE'} the 99% null band "
            f"[{r['auc_null_band_low']:.3f}, {r['auc_null_band_high']:.3f}]"
        )
        if r["null_check_pass"]:
            log.info(msg)
        elif cfg["evaluation"]["fail_on_null"]:
            log.error(msg)
            raise SystemExit(f"{msg} (evaluation.fail_on_null)")
        else:
            log.warning(msg)
