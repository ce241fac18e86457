"""Segmentation agreement (study 2) for any named set of masks per case.

Names are readers ("R1", "R2", ...), their ``consensus`` and automatic methods
("slic", "nnunet"). Tables:

- pairwise Dice: mean over cases per pair of names with a 95 % CI by a seeded
  bootstrap over cases and a t-interval, and the symmetric matrix of means;
- volumes against a reference name: volume percentage error (VPE) per case, share of
  cases under 1/5/10/15 % VPE, predicted/true ratio (share > 1, median, one-sample
  Wilcoxon signed-rank test of ratio - 1, tendency);
- Shannon entropy of a soft output (binary entropy of the membership/probability), mean
  in the tumor core (mask eroded slice-wise by a 2D disc of 10 px) vs the boundary rim;
- an overlay figure of the best, median and worst cases by Dice.
"""

from __future__ import annotations

import zlib
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, stats

FLOAT = "%.6g"
VPE_THRESHOLDS = (1, 5, 10, 15)
TENDENCY_ALPHA = 0.05

DEFAULTS: dict = {
    "n_boot": 1000,  # bootstrap resamples of cases for the Dice 95 % CI
    "radius_px": 10,  # radius (pixels) of the 2D disc that erodes the mask into its core
    "reference": "consensus",  # name the volumes are compared with (first reader if absent)
}


# ---------------------------------------------------------------------------------- Dice
def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A & B| / (|A| + |B|); 1.0 when both masks are empty."""
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    s = int(a.sum()) + int(b.sum())
    return float(2 * int((a & b).sum()) / s) if s else 1.0


def case_dice(masks_by_case: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Long table of Dice per case and pair of names (name_a < name_b): case_id,
    name_a, name_b, dice; sorted."""
    rows = []
    for case in sorted(masks_by_case):
        m = masks_by_case[case]
        for a, b in combinations(sorted(m), 2):
            rows.append({"case_id": case, "name_a": a, "name_b": b, "dice": dice(m[a], m[b])})
    cols = ["case_id", "name_a", "name_b", "dice"]
    return pd.DataFrame(rows, columns=cols).sort_values(cols[1:3] + cols[:1], ignore_index=True)


def _pair_rng(seed: int, a: str, b: str) -> np.random.Generator:
    """A generator per pair, so one pair's CI does not change when names are added."""
    return np.random.default_rng([seed, zlib.crc32(a.encode()), zlib.crc32(b.encode())])


def mean_ci(values, n_boot: int = 1000, seed: int = 0, key: tuple = ("", "")) -> dict:
    """Mean, sd, bootstrap percentile 95 % CI and t-interval 95 % CI of ``values``."""
    v = np.asarray(values, float)
    n = len(v)
    out = {"mean": float(v.mean()) if n else np.nan, "sd": np.nan, "n": n}
    out |= {"ci_low": np.nan, "ci_high": np.nan, "t_low": np.nan, "t_high": np.nan}
    if n > 1:
        sd = float(v.std(ddof=1))
        idx = _pair_rng(seed, *key).integers(0, n, size=(int(n_boot), n))
        boots = v[idx].mean(axis=1)
        half = float(stats.t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
        out |= {
            "sd": sd,
            "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5)),
            "t_low": out["mean"] - half,
            "t_high": out["mean"] + half,
        }
    return out


def pairwise_dice(
    masks_by_case: dict[str, dict[str, np.ndarray]], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean Dice per pair of names over the cases that have both masks, with a 95 % CI
    by bootstrap over cases (seeded per pair) and a t-interval.

    Columns: name_a, name_b, mean, sd, ci_low, ci_high, t_low, t_high, n.
    """
    long = case_dice(masks_by_case)
    cols = ["name_a", "name_b", "mean", "sd", "ci_low", "ci_high", "t_low", "t_high", "n"]
    rows = [
        {"name_a": a, "name_b": b, **mean_ci(g["dice"], n_boot, seed, (a, b))}
        for (a, b), g in long.groupby(["name_a", "name_b"], sort=True)
    ]
    return pd.DataFrame(rows, columns=cols)


def dice_matrix(pairs: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """Symmetric matrix of ``value`` (mean Dice by default) over names, diagonal 1."""
    names = sorted(set(pairs["name_a"]) | set(pairs["name_b"]))
    mat = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for a, b, v in pairs[["name_a", "name_b", value]].itertuples(index=False):
        mat.loc[a, b] = mat.loc[b, a] = v
    mat.index.name = "name"
    return mat


# ------------------------------------------------------------------------------- volumes
def volume_errors(pred_vol: pd.Series, true_vol: pd.Series) -> pd.DataFrame:
    """Per case (index case_id, sorted): pred_ml, true_ml, volume percentage error
    ``vpe_percent`` = |pred - true| / true * 100 and ``ratio`` = pred / true.

    Cases missing on either side or with a zero true volume are left out.
    """
    df = pd.DataFrame({"pred_ml": pred_vol, "true_ml": true_vol}).dropna()
    df = df[df["true_ml"] > 0].sort_index()
    df.index.name = "case_id"
    df["vpe_percent"] = (df["pred_ml"] - df["true_ml"]).abs() / df["true_ml"] * 100
    df["ratio"] = df["pred_ml"] / df["true_ml"]
    return df


def ratio_tendency(ratio, alpha: float = TENDENCY_ALPHA) -> dict:
    """Share of ratios > 1, median, one-sample Wilcoxon signed-rank test of ratio - 1
    (two-sided; exact ratios of 1 carry no sign and are dropped) and the tendency."""
    r = np.asarray(ratio, float)
    diff = r - 1
    p = np.nan
    if np.count_nonzero(diff) >= 1:
        p = float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    med = float(np.median(r)) if len(r) else np.nan
    tendency = "no systematic bias"
    if p < alpha:
        if med > 1:
            tendency = "over-segmentation"
        elif med < 1:
            tendency = "under-segmentation"
    return {
        "share_ratio_gt_1": float((r > 1).mean()) if len(r) else np.nan,
        "median_ratio": med,
        "wilcoxon_p": p,
        "tendency": tendency,
    }


def volume_summary(errors: pd.DataFrame, alpha: float = TENDENCY_ALPHA) -> dict:
    """Share of cases with VPE < 1/5/10/15 %, median VPE and the ratio tendency."""
    vpe = errors["vpe_percent"].to_numpy(float)
    out: dict = {"n": int(len(vpe))}
    for t in VPE_THRESHOLDS:
        out[f"share_vpe_lt_{t}"] = float((vpe < t).mean()) if len(vpe) else np.nan
    out["median_vpe_percent"] = float(np.median(vpe)) if len(vpe) else np.nan
    return out | ratio_tendency(errors["ratio"], alpha)


# ------------------------------------------------------------------------------- entropy
def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of a foreground probability: -p log2 p - (1-p) log2 (1-p)
    (0 at p in {0, 1}, 1 at p = 0.5)."""
    p = np.clip(np.asarray(p, float), 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def core_rim(mask: np.ndarray, radius_px: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Core (mask eroded in every axial slice by a 2D disc of ``radius_px``) and rim."""
    from skimage.morphology import disk

    m = np.asarray(mask).astype(bool)
    if m.ndim == 2:
        m = m[None]
    core = ndimage.binary_erosion(m, structure=disk(int(radius_px))[None], border_value=0)
    return core.reshape(np.shape(mask)), (m & ~core).reshape(np.shape(mask))


def entropy_core_rim(membership: np.ndarray, mask: np.ndarray, radius_px: int = 10) -> dict:
    """Mean binary entropy of ``membership`` in the tumor core and the boundary rim.

    A tumor narrower than the disc has no core: ``entropy_core`` is NaN and
    ``core_empty`` True.
    """
    if np.shape(membership) != np.shape(mask):
        raise ValueError(f"membership {np.shape(membership)} vs mask {np.shape(mask)}")
    core, rim = core_rim(mask, radius_px)
    h = binary_entropy(membership)
    return {
        "entropy_core": float(h[core].mean()) if core.any() else np.nan,
        "entropy_rim": float(h[rim].mean()) if rim.any() else np.nan,
        "core_voxels": int(core.sum()),
        "rim_voxels": int(rim.sum()),
        "core_empty": bool(not core.any()),
    }


def entropy_summary(entropy: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean core and rim entropy over cases with a core, and the paired
    Wilcoxon signed-rank p of core vs rim."""
    rows = []
    for method, g in entropy.groupby("method", sort=True):
        g = g.dropna(subset=["entropy_core", "entropy_rim"])
        d = (g["entropy_rim"] - g["entropy_core"]).to_numpy(float)
        p = float(stats.wilcoxon(d).pvalue) if np.count_nonzero(d) >= 1 else np.nan
        rows.append(
            {
                "method": method,
                "mean_core": float(g["entropy_core"].mean()) if len(g) else np.nan,
                "mean_rim": float(g["entropy_rim"].mean()) if len(g) else np.nan,
                "wilcoxon_p": p,
                "n_with_core": int(len(g)),
            }
        )
    return pd.DataFrame(
        rows, columns=["method", "mean_core", "mean_rim", "wilcoxon_p", "n_with_core"]
    )


# -------------------------------------------------------------------------------- figure
def pick_cases(per_case: pd.Series) -> dict[str, str]:
    """Best, median and worst case by a per-case score (ties: the first case id)."""
    s = per_case.dropna().sort_index(kind="stable")
    if s.empty:
        return {}
    order = s.sort_values(kind="stable")
    return {
        "best": str(order.index[-1]),
        "median": str(order.index[(len(order) - 1) // 2]),
        "worst": str(order.index[0]),
    }


def overlay_figure(
    cases: dict[str, str],
    images: dict[str, np.ndarray],
    masks_by_case: dict[str, dict[str, np.ndarray]],
    reference: str | None = None,
    scores: pd.Series | None = None,
):
    """Matplotlib Figure: one panel per case (``cases``: label -> case id), the axial
    slice through the reference mask's centre of mass, contours of every mask."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    names = sorted({n for c in cases.values() for n in masks_by_case[c]})
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    fig = Figure(figsize=(4 * max(1, len(cases)), 4.4), dpi=100)
    axes = fig.subplots(1, max(1, len(cases)), squeeze=False)[0]
    for ax, (label, case) in zip(axes, cases.items(), strict=False):
        m = masks_by_case[case]
        ref = m.get(reference) if reference else None
        ref = ref if ref is not None and np.any(ref) else np.any(np.stack(list(m.values())), 0)
        z = int(round(ndimage.center_of_mass(np.asarray(ref, float))[0])) if ref.any() else 0
        ax.imshow(images[case][z], cmap="gray", interpolation="nearest")
        for n in sorted(m):
            if np.any(m[n][z]):
                ax.contour(m[n][z].astype(float), levels=[0.5], colors=colors[n], linewidths=1.2)
        title = f"{label}: {case}"
        if scores is not None and case in scores.index:
            title += f" (Dice {scores[case]:.3f})"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    handles = [Line2D([], [], color=colors[n]) for n in names]
    fig.legend(handles, names, loc="lower center", ncol=max(1, len(names)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


# -------------------------------------------------------------------------------- tables
def _load(value) -> tuple[np.ndarray, float | None]:
    """Array and voxel volume (ml) of a path (SimpleITK) or an array (volume unknown)."""
    if isinstance(value, str | Path):
        import SimpleITK as sitk

        img = sitk.ReadImage(str(value))
        return sitk.GetArrayFromImage(img), float(np.prod(img.GetSpacing())) / 1000.0
    return np.asarray(value), None


def _write(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    df.to_csv(path, sep="\t", index=index, float_format=FLOAT, lineterminator="\n")


def agreement_tables(
    masks_by_case: dict,
    reference: str,
    memberships: dict | None,
    out_dir,
    voxel_ml: dict | None = None,
    radius_px: int = 10,
    seed: int = 0,
    n_boot: int = 1000,
    images: dict | None = None,
) -> dict:
    """Write every agreement table of a set of named masks into ``out_dir``.

    ``masks_by_case``: case -> name -> mask (NIfTI path or array); ``reference``: the
    name volumes are compared with; ``memberships``: (case, name) -> soft output (path or
    array); ``voxel_ml``: case -> voxel volume in ml (read from the files when paths are
    given); ``images``: case -> image (path or array) for the overlay figure.

    Writes dice_pairwise.tsv, dice_matrix.tsv, dice_cases.tsv, volume_error.tsv,
    volume_summary.tsv, entropy.tsv, entropy_summary.tsv and, with ``images``,
    overlay.png (best/median/worst case by mean Dice of the other names vs the
    reference). Returns the tables.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    masks: dict[str, dict[str, np.ndarray]] = {}
    vox = dict(voxel_ml or {})
    for case in sorted(masks_by_case):
        masks[case] = {}
        for name in sorted(masks_by_case[case]):
            arr, ml = _load(masks_by_case[case][name])
            masks[case][name] = arr.astype(bool)
            if ml is not None:
                vox.setdefault(case, ml)
    missing = [c for c in masks if c not in vox]
    if missing:
        raise ValueError(f"voxel volume unknown for cases {missing[:5]}: pass voxel_ml")

    per_case = case_dice(masks)
    pairs = pairwise_dice(masks, n_boot=n_boot, seed=seed)
    _write(per_case, out / "dice_cases.tsv")
    _write(pairs, out / "dice_pairwise.tsv")
    _write(dice_matrix(pairs) if len(pairs) else pd.DataFrame(), out / "dice_matrix.tsv", True)

    vol_rows, summ = [], []
    names = sorted({n for m in masks.values() for n in m} - {reference})
    true_ml = pd.Series(
        {c: m[reference].sum() * vox[c] for c, m in masks.items() if reference in m}, dtype=float
    )
    for name in names:
        pred_ml = pd.Series(
            {c: m[name].sum() * vox[c] for c, m in masks.items() if name in m}, dtype=float
        )
        err = volume_errors(pred_ml, true_ml)
        if err.empty:
            continue
        vol_rows.append(err.reset_index().assign(method=name, reference=reference))
        summ.append({"method": name, "reference": reference, **volume_summary(err)})
    vol_cols = ["method", "reference", "case_id", "pred_ml", "true_ml", "vpe_percent", "ratio"]
    vol = pd.concat(vol_rows)[vol_cols] if vol_rows else pd.DataFrame(columns=vol_cols)
    vol = vol.sort_values(["method", "case_id"], ignore_index=True)
    summary = pd.DataFrame(summ)
    _write(vol, out / "volume_error.tsv")
    _write(summary, out / "volume_summary.tsv")

    ent_cols = ["case_id", "method", "entropy_core", "entropy_rim", "core_voxels"]
    ent_cols += ["rim_voxels", "core_empty"]
    ent_rows = []
    for case, name in sorted(memberships or {}):
        if case in masks and name in masks[case]:
            soft, _ = _load(memberships[(case, name)])
            ent_rows.append(
                {"case_id": case, "method": name}
                | entropy_core_rim(soft, masks[case][name], radius_px)
            )
    ent = pd.DataFrame(ent_rows, columns=ent_cols)
    _write(ent, out / "entropy.tsv")
    ent_sum = entropy_summary(ent)
    _write(ent_sum, out / "entropy_summary.tsv")

    tables = {"cases": per_case, "pairs": pairs, "volumes": vol, "summary": summary}
    tables |= {"entropy": ent, "entropy_summary": ent_sum}
    if images:
        vs_ref = per_case[(per_case["name_a"] == reference) | (per_case["name_b"] == reference)]
        scores = vs_ref.groupby("case_id")["dice"].mean()
        chosen = pick_cases(scores.loc[[c for c in scores.index if c in images]])
        if chosen:
            imgs = {c: _load(images[c])[0] for c in set(chosen.values())}
            fig = overlay_figure(chosen, imgs, masks, reference, scores)
            fig.savefig(out / "overlay.png", metadata={"Software": None})
            tables["overlay_cases"] = chosen
    return tables
