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

import json
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
    return _pairwise(case_dice(masks_by_case), n_boot, seed)


def _pairwise(long: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """:func:`pairwise_dice` of a long table of Dice per case (:func:`case_dice`)."""
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


def case_measures(
    masks: dict[str, dict[str, np.ndarray]],
    reference: str,
    memberships: dict | None = None,
    voxel_ml: dict | None = None,
    radius_px: int = 10,
) -> dict[str, list[dict]]:
    """The per-case pieces every agreement table is computed from, as records:

    - ``dice``: case_id, name_a, name_b, dice (each pair of names of a case);
    - ``volumes``: case_id, name, ml (each mask's volume in ml);
    - ``entropy``: case_id, method, entropy_core, entropy_rim, core_voxels,
      rim_voxels, core_empty (each soft output whose mask exists).

    ``masks``: case -> name -> boolean array; ``memberships``: (case, name) -> soft
    output (path or array); ``voxel_ml``: case -> voxel volume in ml. Pieces of
    disjoint sets of cases concatenate into the pieces of their union, so a cohort's
    tables can be built from per-batch pieces (:func:`write_agreement`).
    """
    vox = dict(voxel_ml or {})
    missing = [c for c in masks if c not in vox]
    if missing:
        raise ValueError(f"voxel volume unknown for cases {missing[:5]}: pass voxel_ml")
    dice_rows = [
        {"case_id": str(c), "name_a": a, "name_b": b, "dice": float(d)}
        for c, a, b, d in case_dice(masks).itertuples(index=False)
    ]
    vol_rows = [
        {"case_id": str(c), "name": n, "ml": float(m[n].sum() * vox[c])}
        for c, m in sorted(masks.items())
        for n in sorted(m)
    ]
    ent_rows = []
    for case, name in sorted(memberships or {}):
        if case in masks and name in masks[case]:
            soft, _ = _load(memberships[(case, name)])
            ent_rows.append(
                {"case_id": str(case), "method": name}
                | entropy_core_rim(soft, masks[case][name], radius_px)
            )
    return {"dice": dice_rows, "volumes": vol_rows, "entropy": ent_rows}


def write_agreement(
    measures: dict[str, list[dict]],
    reference: str,
    out_dir,
    seed: int = 0,
    n_boot: int = 1000,
    images: dict | None = None,
    case_masks=None,
) -> dict:
    """Write every agreement table from the per-case ``measures`` (records of
    :func:`case_measures`, of one or many batches of cases, in any order).

    ``images``: case -> image (path or array) for the overlay figure; ``case_masks``:
    case -> {name: boolean array} of a case the figure shows (a callable, so only the
    best, median and worst cases are read). Writes the files of
    :func:`agreement_tables` and returns its tables.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["case_id", "name_a", "name_b", "dice"]
    per_case = pd.DataFrame(measures["dice"], columns=cols)
    per_case = per_case.sort_values(cols[1:3] + cols[:1], ignore_index=True)
    pairs = _pairwise(per_case, n_boot, seed)
    _write(per_case, out / "dice_cases.tsv")
    _write(pairs, out / "dice_pairwise.tsv")
    _write(dice_matrix(pairs) if len(pairs) else pd.DataFrame(), out / "dice_matrix.tsv", True)

    volumes = sorted(measures["volumes"], key=lambda r: r["case_id"])
    vol_rows, summ = [], []
    names = sorted({r["name"] for r in volumes} - {reference})

    def ml(name: str) -> pd.Series:
        return pd.Series({r["case_id"]: r["ml"] for r in volumes if r["name"] == name}, dtype=float)

    true_ml = ml(reference)
    for name in names:
        err = volume_errors(ml(name), true_ml)
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
    ent_rows = sorted(measures["entropy"], key=lambda r: (r["case_id"], r["method"]))
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
            shown = set(chosen.values())
            imgs = {c: _load(images[c])[0] for c in shown}
            masks = {c: case_masks(c) for c in shown}
            fig = overlay_figure(chosen, imgs, masks, reference, scores)
            fig.savefig(out / "overlay.png", metadata={"Software": None})
            tables["overlay_cases"] = chosen
    return tables


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
    reference). Returns the tables. The same as :func:`case_measures` then
    :func:`write_agreement`.
    """
    masks: dict[str, dict[str, np.ndarray]] = {}
    vox = dict(voxel_ml or {})
    for case in sorted(masks_by_case):
        masks[case] = {}
        for name in sorted(masks_by_case[case]):
            arr, ml = _load(masks_by_case[case][name])
            masks[case][name] = arr.astype(bool)
            if ml is not None:
                vox.setdefault(case, ml)
    measures = case_measures(masks, reference, memberships, vox, radius_px)
    return write_agreement(measures, reference, out_dir, seed, n_boot, images, masks.get)


# ------------------------------------------------- per-batch pieces (registry scale)
# A cohort job that lists every case's files makes planning grow faster than the
# cohort: rule measure_segmentation writes one batch's per-case pieces, rule
# evaluate_segmentation merges them (the same bytes as every case at once).


def _write_json(obj, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, sort_keys=True) + "\n")


def _read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def segmentation_reference(readers: list[str]) -> str:
    """Volumes are compared with the readers' voxel majority when there are three or
    more readers, else with the first reader."""
    return "consensus" if len(readers) >= 3 else readers[0]


def read_case_masks(paths: dict[str, str], readers: list[str]) -> dict[str, np.ndarray]:
    """name -> boolean mask of one case (``paths``: name -> file, markers left out
    already), with the readers' ``consensus`` when there are 3+ readers and each of
    them has a mask."""
    import SimpleITK as sitk

    from radstudy.segment import consensus

    out = {n: sitk.GetArrayFromImage(sitk.ReadImage(str(p))).astype(bool) for n, p in paths.items()}
    if len(readers) >= 3 and all(r in out for r in readers):
        out["consensus"] = consensus([out[r] for r in readers]).astype(bool)
    return out


def measure_segmentation(
    masks: list[list],
    memberships: list[list],
    images: list[list],
    readers: list[str],
    out_json,
) -> dict:
    """Per-case agreement pieces of one batch of cases (radstudy.agreement.case_measures)
    and the files the overlay figure may need, written to ``out_json``.

    ``masks``: [case, name, path] rows; ``memberships``: [case, name, path] rows;
    ``images``: [case, path] rows. Markers (excluded cases/readers) are skipped; a case
    without the reference mask is left out.
    """
    import SimpleITK as sitk

    from radstudy.casestep import marker_reason

    reference = segmentation_reference(readers)
    paths: dict[str, dict[str, str]] = {}
    voxel_ml: dict[str, float] = {}
    for case, name, path in masks:
        if marker_reason(path) is not None:
            continue
        paths.setdefault(case, {})[name] = str(path)
        header = sitk.ImageFileReader()
        header.SetFileName(str(path))
        header.ReadImageInformation()
        voxel_ml[case] = float(np.prod(header.GetSpacing())) / 1000.0
    by_case = {c: read_case_masks(p, readers) for c, p in sorted(paths.items())}
    by_case = {c: m for c, m in by_case.items() if reference in m}
    soft = {}
    for case, name, path in memberships:
        if case in by_case and name in by_case[case] and marker_reason(path) is None:
            soft[(case, name)] = path
    piece = case_measures(by_case, reference, soft, voxel_ml)
    piece["reference"] = reference
    piece["files"] = {
        case: {
            "masks": paths[case],
            "image": (str(p) if marker_reason(p) is None else None),
        }
        for case, p in images
        if case in by_case
    }
    _write_json(piece, out_json)
    return piece


def merge_segmentation(pieces: list, readers: list[str], out_dir, seed: int) -> dict:
    """Every agreement table of the cohort from the per-batch pieces
    (:func:`measure_segmentation`), as radstudy.agreement.agreement_tables writes
    them from every case at once; a placeholder figure when no case has two mask
    sources."""
    reference = segmentation_reference(readers)
    measures: dict[str, list] = {"dice": [], "volumes": [], "entropy": []}
    files: dict[str, dict] = {}
    for path in pieces:
        piece = _read_json(path)
        for key in measures:
            measures[key].extend(piece[key])
        files.update(piece["files"])
    images = {c: f["image"] for c, f in files.items() if f["image"] is not None}
    tables = write_agreement(
        measures,
        reference,
        out_dir,
        seed,
        images=images,
        case_masks=lambda case: read_case_masks(files[case]["masks"], readers),
    )
    overlay = Path(out_dir) / "overlay.png"
    if not overlay.exists():  # nothing to compare: the declared figure says so
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4, 1), dpi=100)
        fig.text(0.5, 0.5, "no case with two mask sources", ha="center", va="center")
        fig.savefig(overlay, metadata={"Software": None})
    return tables
