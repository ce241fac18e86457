"""Tumor segmentation: SLIC superpixels + fuzzy c-means, reader consensus, nnU-Net.

``slic_fcm`` (seed study 1) works inside the organ (or a given region):
1. SLIC superpixels (scikit-image, 3D, spacing-aware) on the intensity-scaled
   volume inside the region's bounding box;
2. fuzzy c-means (scikit-fuzzy) on two features per voxel: its lightly
   smoothed intensity and the mean intensity of its superpixel (the superpixel
   term regularises texture, the voxel term keeps boundaries sharp); fitted on
   a seeded subsample, then applied to every region voxel (``cmeans_predict``);
3. the tumor cluster is chosen by a rule that never looks at reference masks:
   among the clusters, the one whose centre is farthest from the region's
   median intensity, provided it covers less than ``max_fraction`` of the
   region (a tumor is smaller than its organ);
4. mask = voxels whose largest membership is the tumor cluster, largest
   connected component, holes filled; the tumor membership is the soft output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from radstudy.errors import CaseError

log = logging.getLogger(__name__)

DEFAULTS = {
    "n_segments": 400,  # SLIC superpixels in the region's bounding box
    "compactness": 0.05,  # SLIC compactness (intensities scaled to [0, 1])
    "n_clusters": 2,  # fuzzy c-means clusters
    "m": 2.0,  # fuzzy exponent
    "margin_mm": 5.0,  # margin around the region's bounding box
    "max_fraction": 0.6,  # the tumor cluster covers less than this share of the region
    "sample": 20000,  # voxels used to fit the cluster centres
    "smooth_mm": 1.0,  # Gaussian smoothing of the voxel intensity feature
}


def slic_fcm(
    image: np.ndarray,
    spacing,
    region_mask: np.ndarray | None,
    cfg: dict | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Tumor mask (uint8) and membership (float32) of a volume in numpy (z, y, x) order.

    ``spacing`` is given in the same (z, y, x) order as the array.
    """
    import skfuzzy
    from skimage.segmentation import slic

    cfg = {**DEFAULTS, **(cfg or {})}
    spacing = np.asarray(spacing, float)
    region = np.ones(image.shape, bool) if region_mask is None else region_mask.astype(bool)
    if not region.any():
        raise ValueError("empty region mask")
    idx = np.argwhere(region)
    pad = np.ceil(cfg["margin_mm"] / spacing).astype(int)
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, image.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    img, reg = image[box].astype(np.float64), region[box]
    p1, p99 = np.percentile(img[reg], [1, 99])
    scaled = np.clip((img - p1) / (p99 - p1 + 1e-12), 0, 1)
    labels = slic(
        scaled,
        n_segments=int(cfg["n_segments"]),
        compactness=float(cfg["compactness"]),
        channel_axis=None,
        spacing=spacing,
        start_label=1,
        mask=reg,
    )
    sp_mean = ndimage.mean(scaled, labels=labels, index=np.arange(labels.max() + 1))
    smooth = ndimage.gaussian_filter(scaled, sigma=float(cfg["smooth_mm"]) / spacing)
    feats = np.stack([smooth[reg], np.asarray(sp_mean)[labels[reg]]])  # 2 x n_voxels
    rng = np.random.default_rng(seed)
    n = feats.shape[1]
    pick = (
        rng.choice(n, min(n, int(cfg["sample"])), replace=False)
        if n > cfg["sample"]
        else np.arange(n)
    )
    centers, *_ = skfuzzy.cluster.cmeans(
        feats[:, np.sort(pick)],
        c=int(cfg["n_clusters"]),
        m=float(cfg["m"]),
        error=1e-5,
        maxiter=300,
        seed=seed,
    )
    order = np.argsort(centers[:, 0])  # deterministic cluster numbering by intensity
    centers = centers[order]
    u, *_ = skfuzzy.cluster.cmeans_predict(
        feats, centers, m=float(cfg["m"]), error=1e-5, maxiter=300, seed=seed
    )
    hard = np.argmax(u, axis=0)
    median = np.median(smooth[reg])
    share = np.bincount(hard, minlength=len(centers)) / n
    contrast = np.abs(centers[:, 0] - median)
    candidates = [k for k in range(len(centers)) if share[k] < cfg["max_fraction"]]
    if not candidates:
        raise ValueError("no cluster smaller than max_fraction of the region")
    tumor = max(candidates, key=lambda k: (contrast[k], -k))
    member = np.zeros(img.shape, np.float32)
    member[reg] = u[tumor]
    mask = np.zeros(img.shape, bool)
    mask[reg] = hard == tumor
    lab, k = ndimage.label(mask)
    if k == 0:
        raise ValueError("tumor cluster is empty")
    sizes = ndimage.sum(mask, lab, index=np.arange(1, k + 1))
    mask = ndimage.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))
    out_mask = np.zeros(image.shape, np.uint8)
    out_mask[box] = mask
    out_member = np.zeros(image.shape, np.float32)
    out_member[box] = member
    return out_mask, out_member


def segment_case(
    case: str, image_path, region_mask_path, out_mask, out_membership, cfg: dict | None, seed: int
) -> dict:
    """File wrapper of :func:`slic_fcm` (geometry copied from the image)."""
    image = sitk.ReadImage(str(image_path))
    arr = sitk.GetArrayFromImage(image)
    region = None
    if region_mask_path is not None:
        region = sitk.GetArrayFromImage(sitk.ReadImage(str(region_mask_path))).astype(bool)
    try:
        mask, member = slic_fcm(arr, image.GetSpacing()[::-1], region, cfg, seed)
    except ValueError as err:
        raise CaseError(case, image_path, f"SLIC + FCM segmentation failed: {err}") from err
    for arr_out, path in ((mask, out_mask), (member, out_membership)):
        img = sitk.GetImageFromArray(arr_out)
        img.CopyInformation(image)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(img, str(path), useCompression=True)
    return {"voxels": int(mask.sum())}


def consensus(masks: list[np.ndarray], min_votes: int | None = None) -> np.ndarray:
    """Voxel majority: at least ``min_votes`` (default ceil((n+1)/2): 2 of 3) readers."""
    stack = np.stack([np.asarray(m, bool) for m in masks])
    need = int(np.ceil((len(masks) + 1) / 2)) if min_votes is None else int(min_votes)
    return (stack.sum(0) >= need).astype(np.uint8)


def consensus_case(paths: list, out_path, min_votes: int | None = None) -> None:
    ref = sitk.ReadImage(str(paths[0]))
    masks = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in paths]
    out = sitk.GetImageFromArray(consensus(masks, min_votes))
    out.CopyInformation(ref)
    sitk.WriteImage(out, str(out_path), useCompression=True)


def nnunet_predict(image_paths: dict, model_folder, out_mask, cfg: dict | None = None) -> None:
    """Predict with a trained nnU-Net v2 model folder through nnU-Net's own predictor."""
    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    except ImportError as err:
        raise RuntimeError(
            "segmentation.method nnunet needs nnunetv2: pip install nnunetv2"
        ) from err
    cfg = cfg or {}
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=False,
        verbose=False,
    )
    predictor.initialize_from_trained_model_folder(
        str(model_folder), use_folds=cfg.get("folds", (0,)), checkpoint_name="checkpoint_final.pth"
    )
    files = [str(image_paths[k]) for k in sorted(image_paths)]
    predictor.predict_from_files(
        [files],
        [str(out_mask)],
        save_probabilities=True,
        overwrite=True,
        num_processes_preprocessing=1,
        num_processes_segmentation_export=1,
    )


def nnunet_case(image_path, model_folder, out_mask, out_membership, cfg: dict | None) -> None:
    """One case through nnU-Net; the foreground probability becomes the soft output."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        seg = Path(tmp) / "case.nii.gz"
        nnunet_predict({"0000": image_path}, model_folder, seg, cfg)
        image = sitk.ReadImage(str(image_path))
        mask = sitk.ReadImage(str(seg))
        probs = np.load(Path(tmp) / "case.npz")["probabilities"]  # classes x z x y x
        member = sitk.GetImageFromArray(probs[1].astype(np.float32))
        member.CopyInformation(image)
        sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), str(out_mask), useCompression=True)
        sitk.WriteImage(member, str(out_membership), useCompression=True)
