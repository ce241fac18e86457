"""Tumor segmentation: SLIC superpixels + fuzzy c-means, reader consensus.

``slic_fcm`` (study 1's unsupervised tumor ROI) works inside the organ (or a given region):

1. the region (organ mask, optionally dilated by ``dilate_mm``; a central box or the
   whole image when there is no mask) and its bounding box plus ``margin_mm``;
2. SLIC superpixels (scikit-image, 3D, spacing-aware) on the volume scaled to [0, 1]
   by the region's 1st-99th percentiles;
3. fuzzy c-means (scikit-fuzzy) on per-voxel features: the lightly smoothed intensity,
   the mean intensity of its superpixel and (weighted by ``sd_weight``) the superpixel's
   intensity sd. The superpixel terms regularise texture and noise, the voxel term keeps
   the boundary sharper than superpixel edges. The centres are fitted on a seeded
   subsample of voxels (deterministic, bounded cost) and every region voxel then gets
   its memberships from ``cmeans_predict``;
4. the tumor cluster is picked by a rule that never looks at reference masks: the
   cluster whose centre intensity differs most from the region's median intensity in
   the configured direction (``hyper``: brighter, ``hypo``: darker, ``auto``: either),
   among clusters covering less than ``max_fraction`` of the region (a tumor is smaller
   than its organ);
5. mask = voxels whose largest membership is the tumor cluster, opened by a small ball
   (``opening_mm``), largest connected component, holes filled; the tumor cluster's
   membership is the soft output (0 outside the region).

``consensus`` is the voxel majority of reader masks. nnU-Net (the other pseudo-reader)
lives in radstudy.nnunet.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from radstudy.errors import CaseError
from radstudy.imageio import write_image

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "n_segments": 400,  # SLIC superpixels in the region's bounding box
    "compactness": 0.05,  # SLIC compactness (intensities scaled to [0, 1])
    "n_clusters": 2,  # fuzzy c-means clusters
    "m": 2.0,  # fuzzy exponent
    "margin_mm": 5.0,  # margin around the region's bounding box (SLIC works in the box)
    "dilate_mm": 0.0,  # dilation of the region mask before clustering (tumor at the edge)
    "max_fraction": 0.6,  # the tumor cluster covers less than this share of the region
    "sample": 20000,  # voxels used to fit the cluster centres (seeded subsample)
    "smooth_mm": 1.0,  # Gaussian sigma (mm) of the voxel intensity feature
    "merge_gap_sd": 3.0,  # merge clusters beyond this many background sds (tumor side)
    "sd_weight": 0.0,  # weight of the superpixel sd feature (0: not used)
    "opening_mm": 1.0,  # radius (mm) of the ball of the final morphological opening
    # tumor contrast to the organ: hyper | hypo | auto, one value or one per sequence
    "direction": {"T1": "hypo", "T2": "hyper", "CT": "hypo"},
    "no_region": "center",  # without a region mask: center (central box) | whole
    "center_fraction": 0.6,  # side of the central box as a share of each image axis
}

DIRECTIONS = ("hyper", "hypo", "auto")


def warm_up() -> None:
    """Import scikit-fuzzy and SLIC (imported on first use) before a batch forks its
    case processes (radstudy.casestep.run_case_batch): once per batch, not per case."""
    import skfuzzy  # noqa: F401
    from skimage.segmentation import slic  # noqa: F401


def resolve_direction(cfg: dict, sequence: str | None = None) -> str:
    """The tumor contrast direction for ``sequence`` (``auto`` when not listed)."""
    d = cfg.get("direction", "auto")
    if isinstance(d, dict):
        d = d.get(sequence, "auto") if sequence is not None else "auto"
    if d not in DIRECTIONS:
        raise ValueError(f"segmentation.direction {d!r} is not one of {', '.join(DIRECTIONS)}")
    return d


def default_region(shape: tuple, cfg: dict | None = None) -> np.ndarray:
    """Region used without an organ mask: a central box (``center_fraction`` of each
    axis) or the whole image (``no_region: whole``)."""
    cfg = {**DEFAULTS, **(cfg or {})}
    region = np.zeros(shape, bool)
    if cfg["no_region"] == "whole":
        region[...] = True
        return region
    if cfg["no_region"] != "center":
        raise ValueError(f"segmentation.no_region {cfg['no_region']!r} is not center or whole")
    f = float(cfg["center_fraction"])
    box = []
    for n in shape:
        w = max(1, int(round(n * f)))
        lo = (n - w) // 2
        box.append(slice(lo, lo + w))
    region[tuple(box)] = True
    return region


def _ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Ellipsoidal structuring element of a ball of ``radius_mm`` on an anisotropic grid."""
    half = np.floor(radius_mm / spacing).astype(int)
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing, strict=True))
    return dist2 <= radius_mm**2 + 1e-9


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, k = ndimage.label(mask)
    if k <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, lab, index=np.arange(1, k + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def pick_tumor_cluster(
    centers: np.ndarray, share: np.ndarray, median: float, direction: str, max_fraction: float
) -> int:
    """Index of the tumor cluster: largest intensity contrast to the region median in
    ``direction`` among clusters covering less than ``max_fraction`` of the region.

    ``centers[:, 0]`` is the voxel intensity feature; ties go to the lower index.
    """
    signed = centers[:, 0] - median
    score = {"hyper": signed, "hypo": -signed, "auto": np.abs(signed)}[direction]
    ok = [k for k in range(len(centers)) if share[k] < max_fraction and score[k] > 0]
    if not ok:
        side = {"hyper": "brighter", "hypo": "darker", "auto": "different"}[direction]
        raise ValueError(
            f"no cluster {side} than the region median covers less than "
            f"{max_fraction:.0%} of the region (check segmentation.direction)"
        )
    return max(ok, key=lambda k: (score[k], -k))


def merge_tumor_clusters(
    centers: np.ndarray, share: np.ndarray, first: int, bg: int, gap: float, max_fraction: float
) -> list[int]:
    """Tumor clusters: ``first`` plus every other cluster on the same side of the
    background (largest) cluster ``bg`` whose centre lies more than ``gap`` from it.

    With three or more clusters a heterogeneous tumor (viable tissue plus brighter
    necrosis on T2) is split into several clusters; they are merged as long as together
    they cover less than ``max_fraction`` of the region, else only ``first`` is kept.
    """
    if first == bg:
        return [first]
    side = np.sign(centers[first, 0] - centers[bg, 0])
    merged = [
        k
        for k in range(len(centers))
        if k == first or (k != bg and side * (centers[k, 0] - centers[bg, 0]) > gap)
    ]
    return merged if share[merged].sum() < max_fraction else [first]


def slic_fcm(
    image: np.ndarray,
    spacing,
    region_mask: np.ndarray | None,
    cfg: dict | None = None,
    seed: int = 0,
    sequence: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tumor mask (uint8) and tumor membership (float32, 0-1) of a volume.

    ``image`` and ``region_mask`` are numpy (z, y, x) arrays and ``spacing`` is given
    in the same order (``sitk_image.GetSpacing()[::-1]``). ``sequence`` selects the
    direction when ``cfg["direction"]`` is a per-sequence dict. Raises ``ValueError``
    when the volume cannot be segmented (no contrast, no tumor-like cluster, empty mask).
    """
    import skfuzzy
    from skimage.segmentation import slic

    cfg = {**DEFAULTS, **(cfg or {})}
    direction = resolve_direction(cfg, sequence)
    image = np.asarray(image)
    spacing = np.asarray(spacing, float)
    if image.ndim != 3 or spacing.shape != (3,):
        raise ValueError(f"expected a 3D volume and 3 spacings, got {image.shape}, {spacing}")
    if region_mask is None:
        region = default_region(image.shape, cfg)
    else:
        region = np.asarray(region_mask).astype(bool)
        if region.shape != image.shape:
            raise ValueError(f"region mask shape {region.shape} != image shape {image.shape}")
    if not region.any():
        raise ValueError("region (organ) mask is empty")
    if cfg["dilate_mm"] > 0:
        region = ndimage.binary_dilation(region, structure=_ball(cfg["dilate_mm"], spacing))
    region &= np.isfinite(image)

    idx = np.argwhere(region)
    pad = np.ceil(float(cfg["margin_mm"]) / spacing).astype(int)
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, image.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    img = np.nan_to_num(image[box].astype(np.float64))
    reg = region[box]
    p1, p99 = np.percentile(img[reg], [1, 99])
    if not p99 > p1:
        raise ValueError("no intensity contrast inside the region")
    scaled = np.clip((img - p1) / (p99 - p1), 0, 1)

    labels = slic(
        scaled,
        n_segments=int(cfg["n_segments"]),
        compactness=float(cfg["compactness"]),
        channel_axis=None,
        spacing=spacing,
        start_label=1,
        mask=reg,
    )
    index = np.arange(labels.max() + 1)
    sp_mean = np.asarray(ndimage.mean(scaled, labels=labels, index=index))
    sp_sd = np.asarray(ndimage.standard_deviation(scaled, labels=labels, index=index))
    smooth = ndimage.gaussian_filter(scaled, sigma=float(cfg["smooth_mm"]) / spacing)
    lab_reg = labels[reg]
    rows = [smooth[reg], sp_mean[lab_reg]]
    if cfg["sd_weight"] > 0:
        rows.append(float(cfg["sd_weight"]) * sp_sd[lab_reg])
    feats = np.stack(rows)  # features x voxels

    n = feats.shape[1]
    n_fit = int(cfg["sample"])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, n_fit, replace=False)) if n > n_fit else np.arange(n)
    m = float(cfg["m"])
    centers, *_ = skfuzzy.cluster.cmeans(
        feats[:, pick], c=int(cfg["n_clusters"]), m=m, error=1e-5, maxiter=300, seed=seed
    )
    centers = centers[np.argsort(centers[:, 0])]  # deterministic numbering: dark to bright
    u, *_ = skfuzzy.cluster.cmeans_predict(feats, centers, m=m, error=1e-5, maxiter=300, seed=seed)
    hard = np.argmax(u, axis=0)
    share = np.bincount(hard, minlength=len(centers)) / n
    median = float(np.median(smooth[reg]))
    first = pick_tumor_cluster(centers, share, median, direction, float(cfg["max_fraction"]))
    bg = int(np.argmax(share))
    bg_sd = float(np.std(feats[0, hard == bg]))
    tumor = merge_tumor_clusters(
        centers, share, first, bg, float(cfg["merge_gap_sd"]) * bg_sd, float(cfg["max_fraction"])
    )

    member = np.zeros(img.shape, np.float32)
    member[reg] = u[tumor].sum(axis=0)
    raw = np.zeros(img.shape, bool)
    raw[reg] = np.isin(hard, tumor)
    mask = raw
    if cfg["opening_mm"] > 0:
        mask = ndimage.binary_opening(raw, structure=_ball(cfg["opening_mm"], spacing))
        if not mask.any():  # a tumor thinner than the opening ball: keep the raw cluster
            log.warning("opening removed the whole tumor cluster; kept it unopened")
            mask = raw
    if not mask.any():
        raise ValueError("tumor cluster is empty")
    mask = ndimage.binary_fill_holes(_largest_component(mask))

    out_mask = np.zeros(image.shape, np.uint8)
    out_mask[box] = mask
    out_member = np.zeros(image.shape, np.float32)
    out_member[box] = np.clip(member, 0, 1)
    return out_mask, out_member


def _write_like(arr: np.ndarray, reference: sitk.Image, path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(reference)
    write_image(img, path)


def segment_case(
    case: str,
    image_path,
    region_mask_path,
    out_mask,
    out_membership,
    cfg: dict | None,
    seed: int,
    sequence: str | None = None,
) -> dict:
    """File wrapper of :func:`slic_fcm`: NIfTI in, mask (uint8) and membership (float32)
    out with the image's geometry. ``region_mask_path`` None -> ``no_region`` fallback.

    Returns ``{"voxels", "volume_ml", "direction"}``; raises ``CaseError`` when the case
    cannot be segmented.
    """
    cfg = {**DEFAULTS, **(cfg or {})}
    image = sitk.ReadImage(str(image_path))
    if image.GetDimension() != 3:
        raise CaseError(case, image_path, f"expected a 3D image, got {image.GetDimension()}D")
    arr = sitk.GetArrayFromImage(image)
    region = None
    if region_mask_path is not None:
        rimg = sitk.ReadImage(str(region_mask_path))
        region = sitk.GetArrayFromImage(rimg).astype(bool)
        if region.shape != arr.shape:
            raise CaseError(
                case,
                region_mask_path,
                f"organ mask grid {rimg.GetSize()} differs from the image grid "
                f"{image.GetSize()}; resample it onto the image",
            )
        if not region.any():
            raise CaseError(case, region_mask_path, "organ mask is empty")
    try:
        mask, member = slic_fcm(arr, image.GetSpacing()[::-1], region, cfg, seed, sequence)
    except ValueError as err:
        raise CaseError(case, image_path, f"SLIC + FCM segmentation failed: {err}") from err
    _write_like(mask, image, out_mask)
    _write_like(member, image, out_membership)
    voxels = int(mask.sum())
    return {
        "voxels": voxels,
        "volume_ml": voxels * float(np.prod(image.GetSpacing())) / 1000.0,
        "direction": resolve_direction(cfg, sequence),
    }


def consensus(masks: list[np.ndarray], min_votes: int | None = None) -> np.ndarray:
    """Voxel majority: voxels marked by at least ``min_votes`` masks (default
    ceil((n + 1) / 2): 2 of 3, 3 of 4, 3 of 5)."""
    if not masks:
        raise ValueError("consensus of no masks")
    stack = np.stack([np.asarray(m).astype(bool) for m in masks])
    need = int(np.ceil((len(masks) + 1) / 2)) if min_votes is None else int(min_votes)
    if not 1 <= need <= len(masks):
        raise ValueError(f"min_votes {need} is outside 1..{len(masks)}")
    return (stack.sum(0) >= need).astype(np.uint8)


def consensus_case(paths: list, out_path, min_votes: int | None = None, case: str = "") -> None:
    """File wrapper of :func:`consensus`; every mask must share the first one's grid."""
    ref = sitk.ReadImage(str(paths[0]))
    masks = []
    for p in paths:
        img = sitk.ReadImage(str(p))
        if img.GetSize() != ref.GetSize() or not np.allclose(
            img.GetSpacing(), ref.GetSpacing(), atol=1e-4
        ):
            raise CaseError(
                case, p, f"mask grid differs from {Path(paths[0]).name}; resample the readers"
            )
        masks.append(sitk.GetArrayFromImage(img))
    _write_like(consensus(masks, min_votes), ref, out_path)
