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
from radstudy.tables import read_outcomes, read_tables

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
    if (~known).any():
        log.warning("%d training rows without outcome left out", int((~known).sum()))
    X, y = X[known], y[known]
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
def combat_from_cfg(cfg: dict):
    from radstudy.harmonize import ComBat

    h = cfg["harmonization"] if "harmonization" in cfg else cfg
    return ComBat(
        batch_col="center",
        covariate_cols=tuple(f"clinical__{c}" for c in h["covariates"]),
        parametric=h["parametric"],
        eb=h["eb"],
        mean_only=h["mean_only"],
        ref_batch=h["ref_batch"] or None,
        min_new_batch=h["min_new_batch"],
    )


def fit_combat(tables: list[str], hcfg: dict, out_model: str, out_summary: str) -> None:
    """Fit ComBat on the training rows of the training centers; save it frozen."""
    from radstudy.harmonize import center_predictability

    X = read_tables(tables)
    X = X[X["split"] == "train"].drop(columns="split")
    combat = combat_from_cfg({"harmonization": hcfg})
    if hcfg["enabled"]:
        combat.fit(X)
    _dump(combat, out_model)
    feats = [c for c in X.columns if c != "center" and not c.startswith("clinical__")]
    summary = {
        "enabled": bool(hcfg["enabled"]),
        "training_rows": int(len(X)),
        "centers": {str(k): int(v) for k, v in X["center"].value_counts().sort_index().items()},
        "n_features": len(feats),
        "settings": {k: hcfg.get(k) for k in sorted(hcfg)},
    }
    if hcfg["enabled"] and X["center"].nunique() > 1:
        H = combat.transform(X)
        summary["center_auc_before"] = center_predictability(X[feats], X["center"], seed=0)
        summary["center_auc_after"] = center_predictability(H[feats], X["center"], seed=0)
    _write_json(summary, out_summary)


def harmonize_center(model: str, table: str, out_table: str) -> None:
    """Map one center's rows onto the frozen reference (unseen centers included)."""
    combat = joblib.load(model)
    X = pd.read_parquet(table)
    split = X.pop("split")
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
def build_pipeline(spec: dict, cfg: dict, ep: dict, robust: list[str] | None, seed: int):
    """The whole learned chain of one model as one (imblearn) Pipeline."""
    from radstudy.models import ColumnGroupSelector, build_classification_pipeline
    from radstudy.reproducibility import ICCFilter
    from radstudy.selection import build_selector

    groups = list(spec["groups"])
    pre = [("groups", ColumnGroupSelector(groups=tuple(groups), keep_cols=("center",)))]
    harmonize = cfg["harmonization"]["enabled"] and ("radiomics" in groups or "deep" in groups)
    if harmonize:
        pre.append(("combat", combat_from_cfg(cfg)))
    else:
        pre.append(("drop_center", ColumnGroupSelector(groups=tuple(groups), keep_cols=())))
    if robust is not None and "radiomics" in groups:
        pre.append(("icc", ICCFilter(keep=robust)))
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
) -> None:
    """Fit one model's pipeline on the training rows; write model, card, selection."""
    from radstudy.models import model_card

    ep, spec = _endpoint(cfg, endpoint), _model_spec(cfg, endpoint, model)
    X, y = training_xy(tables, sheets, ep)
    pipe = build_pipeline(spec, cfg, ep, _robust(robust_path), _seed(cfg, endpoint, model))
    pipe.fit(X, y)
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
        }
    )
    if ep["type"] == "survival":
        from radstudy.survival import nomogram

        score = pd.Series(pipe.predict(X), index=X.index)
        card["cutoff"] = float(np.median(score))  # learned on training rows only
        card["surv_times"] = [float(t) for t in surv_times(y)]
        card.update(clinical_cox(score, X, y))
        Z = pipe[:-1].transform(X)  # the Cox model's inputs (scaled training rows)
        t_point = float(np.median(y.loc[y["event"] == 1, "time"]))
        nomo = nomogram(pipe.steps[-1][1], Z, t_point)
        card["nomogram"] = {
            "time_point": t_point,
            "points": nomo["points"].to_dict(orient="list"),
            "total": nomo["total"].to_dict(orient="list"),
        }
    _dump(pipe, out_model)
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
) -> None:
    """Out-of-fold predictions on training rows; the whole chain is refit per fold."""
    from radstudy.models import cross_validated_predictions, leave_one_center_out_predictions

    ep, spec = _endpoint(cfg, endpoint), _model_spec(cfg, endpoint, model)
    X, y = training_xy(tables, sheets, ep)
    seed = _seed(cfg, endpoint, model)
    pipe = build_pipeline(spec, cfg, ep, _robust(robust_path), seed)
    cv = cfg["evaluation"]["cv"]
    times = surv_times(y) if ep["type"] == "survival" else None
    runs = [("cv", y)]
    if cfg["evaluation"]["shuffled_null"] and ep["type"] == "binary":
        rng = np.random.default_rng(seed)
        runs.append(("cv_shuffled", pd.Series(rng.permutation(y.values), index=y.index)))
    frames = []
    for cohort, yy in runs:
        pred = cross_validated_predictions(
            pipe,
            X,
            yy,
            n_splits=cv["n_splits"],
            n_repeats=cv["n_repeats"],
            random_state=seed,
            surv_times=times,
        )
        pred.insert(0, "cohort", cohort)
        frames.append(pred)
    if cfg["evaluation"]["loco"] and X["center"].nunique() > 1:
        # leave-one-center-out over the training centers: pooled ("loco", the mean of
        # per-center AUCs) and per held-out center ("loco:{center}")
        loco = leave_one_center_out_predictions(pipe, X, y, surv_times=times)
        loco = loco.drop(columns="center")
        per = loco.assign(cohort="loco:" + loco["fold"].astype(str), fold=np.nan)
        frames += [loco.assign(cohort="loco"), per]
    out = pd.concat(frames).sort_values(["cohort", "repeat", "case_id"])
    _write_tsv(out, out_predictions)


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
            table[["case_id", "cohort", "y_true", "y_prob"]],
            threshold=threshold,
            n_boot=n_boot,
            seed=seed,
        )
    else:
        cols = ["case_id", "cohort", "time", "event", "score"]
        s_cols = [c for c in cv.columns if c.startswith("S_")]
        if not all(c in pred.columns for c in s_cols):
            s_cols = []  # predicted survival missing somewhere: no Brier score
        table = pd.concat([cv[cols + s_cols], pred[cols + s_cols]]).reset_index(drop=True)
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
    _write_tsv(metrics, out_metrics)
    curves.to_parquet(out_curves)


# -------------------------------------------------------------------------- segmentation
def evaluate_segmentation(
    masks: list[list],
    memberships: list[list],
    readers: list[str],
    out_dir: str,
    seed: int,
    images: list[list] | None = None,
) -> None:
    """Agreement tables between readers, their consensus and automatic methods, and
    the overlay figure (best / median / worst case by Dice vs the reference).

    ``masks``: [case, name, path] rows; ``memberships``: [case, name, path] rows;
    ``images``: [case, path] rows. Markers (excluded cases/readers) are skipped. The
    reference is the voxel majority of the readers when there are three or more,
    else the first reader.
    """
    import SimpleITK as sitk

    from radstudy.agreement import agreement_tables
    from radstudy.casestep import marker_reason
    from radstudy.segment import consensus

    by_case: dict[str, dict] = {}
    voxel_ml: dict[str, float] = {}
    for case, name, path in masks:
        if marker_reason(path) is not None:
            continue
        img = sitk.ReadImage(str(path))
        by_case.setdefault(case, {})[name] = sitk.GetArrayFromImage(img).astype(bool)
        voxel_ml[case] = float(np.prod(img.GetSpacing())) / 1000.0
    reference = readers[0]
    if len(readers) >= 3:
        reference = "consensus"
        for m in by_case.values():
            if all(r in m for r in readers):
                m["consensus"] = consensus([m[r] for r in readers]).astype(bool)
    soft = {}
    for case, name, path in memberships:
        if case in by_case and name in by_case[case] and marker_reason(path) is None:
            soft[(case, name)] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    by_case = {c: m for c, m in by_case.items() if reference in m}
    # paths: agreement_tables reads only the best / median / worst cases it shows
    imgs = {
        case: path for case, path in images or [] if case in by_case and marker_reason(path) is None
    }
    agreement_tables(by_case, reference, soft, out_dir, voxel_ml, seed=seed, images=imgs)
    overlay = Path(out_dir) / "overlay.png"
    if not overlay.exists():  # nothing to compare: the declared figure says so
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4, 1), dpi=100)
        fig.text(0.5, 0.5, "no case with two mask sources", ha="center", va="center")
        fig.savefig(overlay, metadata={"Software": None})
