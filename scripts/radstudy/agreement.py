"""Segmentation agreement tables (seed study 2) for any named set of masks per case:
pairwise Dice with 95% CI, volume errors, volume ratios with a Wilcoxon test,
entropy of the soft output in the tumor core vs the boundary rim."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, stats

FLOAT = "%.6g"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def pairwise_dice(
    masks_by_case: dict[str, dict[str, np.ndarray]], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean Dice per pair of mask names over cases, bootstrap 95% CI (cases resampled)."""
    names = sorted({n for m in masks_by_case.values() for n in m})
    rng = np.random.default_rng(seed)
    rows = []
    for a, b in combinations(names, 2):
        vals = np.array(
            [dice(m[a], m[b]) for _, m in sorted(masks_by_case.items()) if a in m and b in m]
        )
        if not len(vals):
            continue
        boots = [vals[rng.integers(0, len(vals), len(vals))].mean() for _ in range(n_boot)]
        lo, hi = np.percentile(boots, [2.5, 97.5])
        rows.append(
            {
                "name_a": a,
                "name_b": b,
                "mean": vals.mean(),
                "sd": vals.std(ddof=1) if len(vals) > 1 else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n": len(vals),
            }
        )
    return pd.DataFrame(rows)


def dice_matrix(pairs: pd.DataFrame) -> pd.DataFrame:
    """Symmetric matrix of mean Dice (diagonal 1)."""
    names = sorted(set(pairs["name_a"]) | set(pairs["name_b"]))
    mat = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for _, r in pairs.iterrows():
        mat.loc[r["name_a"], r["name_b"]] = mat.loc[r["name_b"], r["name_a"]] = r["mean"]
    return mat


def volume_errors(pred_vol: pd.Series, true_vol: pd.Series) -> pd.DataFrame:
    """Per case: volume percentage error |pred - true| / true * 100 and ratio pred / true."""
    df = pd.DataFrame({"pred_ml": pred_vol, "true_ml": true_vol}).dropna()
    df["vpe_percent"] = (df["pred_ml"] - df["true_ml"]).abs() / df["true_ml"] * 100
    df["ratio"] = df["pred_ml"] / df["true_ml"]
    return df


def volume_summary(errors: pd.DataFrame) -> dict:
    """Share of cases under 1/5/10/15 % error; ratio share > 1, median, Wilcoxon vs 1."""
    out = {f"share_vpe_lt_{t}": float((errors["vpe_percent"] < t).mean()) for t in (1, 5, 10, 15)}
    r = errors["ratio"].to_numpy()
    out["share_ratio_gt_1"] = float((r > 1).mean())
    out["median_ratio"] = float(np.median(r))
    p = float(stats.wilcoxon(r - 1).pvalue) if len(r) > 1 and np.any(r != 1) else 1.0
    out["wilcoxon_p"] = p
    if p < 0.05:
        out["tendency"] = "over-segmentation" if out["median_ratio"] > 1 else "under-segmentation"
    else:
        out["tendency"] = "no systematic bias"
    out["n"] = int(len(r))
    return out


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def entropy_core_rim(membership: np.ndarray, mask: np.ndarray, radius_px: int = 10) -> dict:
    """Mean Shannon entropy of the soft output in the core (mask eroded slice-wise by a
    2D disc of ``radius_px``) and in the rim (mask minus core)."""
    from skimage.morphology import disk

    m = np.asarray(mask, bool)
    fp = disk(radius_px)[None]  # 2D disc applied in every axial slice
    core = ndimage.binary_erosion(m, structure=fp)
    rim = m & ~core
    h = binary_entropy(membership)
    return {
        "entropy_core": float(h[core].mean()) if core.any() else np.nan,
        "entropy_rim": float(h[rim].mean()) if rim.any() else np.nan,
        "core_voxels": int(core.sum()),
        "rim_voxels": int(rim.sum()),
        "core_empty": bool(not core.any()),
    }


def agreement_tables(
    masks_by_case: dict,
    reference: str,
    memberships: dict,
    out_dir,
    voxel_ml: dict,
    radius_px: int = 10,
    seed: int = 0,
) -> dict:
    """Write dice_pairwise/dice_matrix/volume_error/volume_summary/entropy TSVs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = pairwise_dice(masks_by_case, seed=seed)
    pairs.to_csv(out / "dice_pairwise.tsv", sep="\t", index=False, float_format=FLOAT)
    dice_matrix(pairs).to_csv(out / "dice_matrix.tsv", sep="\t", float_format=FLOAT)
    vol_rows, summ = [], []
    names = sorted({n for m in masks_by_case.values() for n in m} - {reference})
    for name in names:
        pv = pd.Series(
            {c: m[name].sum() * voxel_ml[c] for c, m in masks_by_case.items() if name in m}
        )
        tv = pd.Series(
            {
                c: m[reference].sum() * voxel_ml[c]
                for c, m in masks_by_case.items()
                if reference in m
            }
        )
        err = volume_errors(pv, tv).assign(method=name)
        vol_rows.append(err.rename_axis("case_id").reset_index())
        summ.append({"method": name, "reference": reference, **volume_summary(err)})
    vol = pd.concat(vol_rows) if vol_rows else pd.DataFrame(columns=["case_id", "method"])
    vol.to_csv(out / "volume_error.tsv", sep="\t", index=False, float_format=FLOAT)
    pd.DataFrame(summ).to_csv(out / "volume_summary.tsv", sep="\t", index=False, float_format=FLOAT)
    ent = [
        {"case_id": c, "method": n, **entropy_core_rim(u, masks_by_case[c][n], radius_px)}
        for (c, n), u in sorted(memberships.items())
    ]
    ent_cols = [
        "case_id",
        "method",
        "entropy_core",
        "entropy_rim",
        "core_voxels",
        "rim_voxels",
        "core_empty",
    ]
    ent = pd.DataFrame(ent, columns=ent_cols)
    ent.to_csv(out / "entropy.tsv", sep="\t", index=False, float_format=FLOAT)
    return {"pairs": pairs, "volumes": vol, "entropy": ent}
