"""Per-case preprocessing: resampling, N4 bias correction / HU window, normalisation.

``prepare_case`` runs import + QC + resampling + N4 (MRI) or HU window (CT) for
one case x sequence; ``fit_nyul`` learns Nyul landmarks from training images
only; ``normalize_case`` applies z-score in the ROI or the frozen landmarks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radstudy.casestep import marker_reason, write_marker
from radstudy.errors import CaseError
from radstudy.imageio import read_image, write_image
from radstudy.qc import check_image, check_inside, check_mask

log = logging.getLogger(__name__)

DEFAULTS = {
    "modality": "MRI",
    "spacing": [1.0, 1.0, 1.0],
    "interpolator": "bspline",
    "n4": {"enabled": True, "shrink_factor": 2, "iterations": [20, 20, 10]},
    "hu_window": [0, 350],
    "normalization": "zscore",
    "scale": 100.0,
    "nyul_region": "organ",
    "mask_label": 1,
    "nyul_percentiles": [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99],
    "nyul_scale": [0.0, 100.0],
}
INTERPOLATORS = {
    "bspline": sitk.sitkBSpline,  # 3rd-order B-spline
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
}
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def merged(cfg: dict | None) -> dict:
    out = {**DEFAULTS, **(cfg or {})}
    out["n4"] = {**DEFAULTS["n4"], **(cfg or {}).get("n4", {})}
    return out


def target_spacing(cfg: dict, image: sitk.Image) -> tuple[float, float, float]:
    sp = cfg["spacing"]
    if sp == "median":
        sp = cfg.get("median_spacing")
        if sp is None:
            raise ValueError("spacing 'median' needs median_spacing from the training cases")
    return tuple(float(s) for s in sp)


def resample(image: sitk.Image, spacing, interpolator: str = "bspline") -> sitk.Image:
    """Resample onto ``spacing`` (mm) covering the same physical extent."""
    spacing = np.asarray(spacing, float)
    old_sp, old_size = np.asarray(image.GetSpacing()), np.asarray(image.GetSize())
    size = np.maximum(np.round(old_size * old_sp / spacing).astype(int), 1)
    # keep the field of view centred: shift the origin by half the extent change
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    old_extent, new_extent = old_sp * old_size, spacing * size
    shift = direction @ ((old_extent - new_extent) / 2 + (spacing - old_sp) / 2)
    origin = np.asarray(image.GetOrigin()) + shift
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing(tuple(spacing))
    f.SetSize([int(s) for s in size])
    f.SetOutputOrigin(tuple(origin))
    f.SetOutputDirection(image.GetDirection())
    f.SetInterpolator(INTERPOLATORS[interpolator])
    f.SetDefaultPixelValue(float(sitk.GetArrayViewFromImage(image).min()))
    out = f.Execute(sitk.Cast(image, sitk.sitkFloat32))
    return out


def resample_mask_to(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of a mask onto the reference grid."""
    return sitk.Resample(
        mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )


def n4_correct(image: sitk.Image, cfg: dict) -> tuple[sitk.Image, dict]:
    """N4 bias field correction (SimpleITK); returns image and bias field stats."""
    img = sitk.Cast(image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(img)
    shift = float(arr.min())
    pos = img - shift + 1.0  # N4 works on positive intensities
    head = sitk.OtsuThreshold(pos, 0, 1, 200)
    shrink = int(cfg["n4"]["shrink_factor"])
    small = sitk.Shrink(pos, [shrink] * 3) if shrink > 1 else pos
    small_mask = sitk.Shrink(head, [shrink] * 3) if shrink > 1 else head
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in cfg["n4"]["iterations"]])
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(pos)
    corrected = pos / sitk.Exp(log_field) - 1.0 + shift
    field = sitk.GetArrayFromImage(sitk.Exp(log_field))  # a copy: the image is temporary
    inside = sitk.GetArrayFromImage(head).astype(bool)
    vals = field[inside] if inside.any() else field.ravel()
    stats = {"min": float(vals.min()), "max": float(vals.max()), "mean": float(vals.mean())}
    return sitk.Cast(corrected, sitk.sitkFloat32), stats


def hu_window(image: sitk.Image, low: float, high: float) -> sitk.Image:
    return sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, float(low), float(high))


def _percentiles(image: sitk.Image) -> dict:
    arr = sitk.GetArrayViewFromImage(image)
    return {
        str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True)
    }


def prepare_case(
    case: str,
    seq: str,
    image_path,
    mask_paths: dict,
    ref_reader: str,
    out_image,
    out_masks: dict,
    out_qc_json,
    cfg: dict,
) -> dict:
    """Import + QC + resample + N4/HU window for one case x sequence (see module doc).

    A bad reference mask or image raises CaseError (the case is excluded); a bad
    mask of another reader only excludes that reader (its output is a marker).
    """
    cfg = merged(cfg)
    image = read_image(image_path, case)
    check_image(image, case, image_path)
    qc: dict = {
        "case_id": case,
        "sequence": seq,
        "modality": cfg["modality"],
        "input_spacing": list(image.GetSpacing()),
        "input_size": list(image.GetSize()),
        "input_origin": list(image.GetOrigin()),
        "percentiles_before": _percentiles(image),
        "warnings": [],
    }
    masks, mask_problems = {}, {}
    for reader, path in sorted(mask_paths.items()):
        try:
            if path is None:
                raise CaseError(case, f"mask_{reader}", "no mask given for this reader")
            raw = read_image(path, case)
            m = check_mask(
                image, raw, case, path, cfg["mask_label"] if reader != "organ" else "any"
            )
            check_inside(image, m, case, path)
            masks[reader] = m
        except CaseError as err:
            if reader == ref_reader:
                raise
            mask_problems[reader] = str(err)
            qc["warnings"].append(str(err))
    spacing = target_spacing(cfg, image)
    out = resample(image, spacing, cfg["interpolator"])
    if cfg["modality"] == "CT":
        out = hu_window(out, *cfg["hu_window"])
    elif cfg["n4"]["enabled"]:
        out, qc["bias_field"] = n4_correct(out, cfg)
    write_image(out, out_image)
    qc["mask_voxels"] = {}
    for reader, path in out_masks.items():
        if reader in masks:
            m = resample_mask_to(masks[reader], out)
            n = int(sitk.GetArrayViewFromImage(m).sum())
            if n == 0:
                mask_problems[reader] = f"case {case}: mask_{reader}: ROI vanished after resampling"
                if reader == ref_reader:
                    raise CaseError(case, mask_paths[reader], "ROI vanished after resampling")
            else:
                write_image(m, path)
                qc["mask_voxels"][reader] = n
        if reader in mask_problems or reader not in masks:
            write_marker(path, mask_problems.get(reader, f"case {case}: mask_{reader}: missing"))
    qc.update(
        {
            "output_spacing": list(out.GetSpacing()),
            "output_size": list(out.GetSize()),
            "percentiles_after": _percentiles(out),
        }
    )
    Path(out_qc_json).write_text(json.dumps(qc, indent=1, sort_keys=True) + "\n")
    return qc


def median_spacing(image_paths) -> list[float]:
    """Median voxel spacing over images (call with training images only)."""
    sp = []
    for p in image_paths:
        if Path(p).is_dir():  # DICOM series: read it (slice spacing needs every file)
            sp.append(read_image(p, Path(p).name).GetSpacing())
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
        sp.append(reader.GetSpacing())
    return [float(v) for v in np.median(np.asarray(sp), axis=0)]


# ------------------------------------------------------------------------ normalisation
# Nyul & Udupa (1999) histogram standardisation, written here (about 30 lines)
# because the maintained implementation (intensity-normalization) pins numpy<2
# and older SimpleITK, which conflict with this project's pins.
def _landmarks(values: np.ndarray, percentiles) -> np.ndarray:
    return np.percentile(values, percentiles)


def _region_values(image_path, mask_path) -> np.ndarray | None:
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path)))
    if mask_path is not None:
        if marker_reason(mask_path) is not None:
            return None
        m = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))).astype(bool)
        return img[m]
    return img[img > np.percentile(img, 10)]  # foreground: above the background mode


def fit_nyul(image_paths, mask_paths, out_json, cfg: dict) -> dict:
    """Learn the standard landmarks from the (training) images; markers skipped."""
    cfg = merged(cfg)
    pcts = list(cfg["nyul_percentiles"])
    s_min, s_max = cfg["nyul_scale"]
    mapped, used = [], 0
    for img_p, mask_p in zip(image_paths, mask_paths, strict=True):
        if marker_reason(img_p) is not None:
            continue
        vals = _region_values(img_p, mask_p)
        if vals is None or vals.size < 10:
            continue
        lm = _landmarks(vals, pcts)
        # map each image's landmarks linearly so that p_low -> s_min, p_high -> s_max
        mapped.append(s_min + (lm - lm[0]) / (lm[-1] - lm[0] + 1e-12) * (s_max - s_min))
        used += 1
    if not used:
        raise ValueError("fit_nyul: no usable training image")
    standard = np.mean(mapped, axis=0)
    model = {"percentiles": pcts, "standard": [float(v) for v in standard], "n_images": used}
    Path(out_json).write_text(json.dumps(model, indent=1) + "\n")
    return model


def apply_nyul(arr: np.ndarray, region: np.ndarray, model: dict) -> np.ndarray:
    """Piecewise-linear map of this image's landmarks onto the standard ones."""
    lm = _landmarks(region, model["percentiles"])
    lm = np.maximum.accumulate(lm + np.arange(len(lm)) * 1e-9)  # strictly increasing
    std = np.asarray(model["standard"])
    out = np.interp(arr, lm, std)
    # extend linearly beyond the outer landmarks (np.interp would clip)
    lo, hi = arr < lm[0], arr > lm[-1]
    slope_lo = (std[1] - std[0]) / (lm[1] - lm[0] + 1e-12)
    slope_hi = (std[-1] - std[-2]) / (lm[-1] - lm[-2] + 1e-12)
    out[lo] = std[0] + (arr[lo] - lm[0]) * slope_lo
    out[hi] = std[-1] + (arr[hi] - lm[-1]) * slope_hi
    return out


def normalize_case(
    case, image_path, mask_path, out_image, cfg: dict, nyul_json=None, region_mask_path=None
) -> dict:
    """z-score inside the ROI (x scale), Nyul landmarks, or nothing."""
    cfg = merged(cfg)
    image = sitk.ReadImage(str(image_path))
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))).astype(bool)
    method = cfg["normalization"]
    if method == "zscore":
        vals = arr[roi]
        sd = vals.std()
        if sd == 0:
            raise CaseError(case, image_path, "ROI intensities are constant; cannot z-score")
        out = (arr - vals.mean()) / sd * float(cfg["scale"])
    elif method == "nyul":
        if nyul_json is None:
            raise ValueError("normalization nyul needs the fitted landmarks")
        model = json.loads(Path(nyul_json).read_text())
        region = arr[roi]
        if region_mask_path is not None and marker_reason(region_mask_path) is None:
            region = arr[sitk.GetArrayFromImage(sitk.ReadImage(str(region_mask_path))).astype(bool)]
        out = apply_nyul(arr, region, model)
    else:
        out = arr
    img = sitk.GetImageFromArray(out.astype(np.float32))
    img.CopyInformation(image)
    write_image(img, out_image)
    return {"method": method, "roi_mean": float(out[roi].mean()), "roi_sd": float(out[roi].std())}
