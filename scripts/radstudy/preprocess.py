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
from radstudy.dicomio import dicom_kind, read_mask, study_spacing
from radstudy.errors import CaseError, ConfigError
from radstudy.imageio import read_image, read_image_ref, write_image
from radstudy.qc import check_image, check_inside, check_mask

log = logging.getLogger(__name__)

DEFAULTS = {
    "modality": "MRI",
    "spacing": [1.0, 1.0, 1.0],
    "interpolator": "bspline",
    "n4": {
        "enabled": True,
        "shrink_factor": 4,
        "iterations": [20, 20, 10],
        "convergence_threshold": 0.001,
        "control_points": 4,
    },
    "hu_window": [0, 350],
    "normalization": "zscore",
    "scale": 100.0,
    "nyul_region": "organ",  # organ | roi | foreground (Otsu); the workflow picks the masks
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
    """The user's ``preprocess`` section over DEFAULTS (n4 merged key by key), checked."""
    out = {**DEFAULTS, **(cfg or {})}
    out["n4"] = {**DEFAULTS["n4"], **((cfg or {}).get("n4") or {})}
    if out["interpolator"] not in INTERPOLATORS:
        raise ConfigError(
            f"preprocess.interpolator must be one of {sorted(INTERPOLATORS)}, "
            f"not {out['interpolator']!r}"
        )
    if out["modality"] not in ("MRI", "CT"):
        raise ConfigError(f"modality must be MRI or CT, not {out['modality']!r}")
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
    n4.SetConvergenceThreshold(float(cfg["n4"]["convergence_threshold"]))
    n4.SetNumberOfControlPoints([int(cfg["n4"]["control_points"])] * 3)
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
    dicom = cfg.get("dicom") or {}  # radstudy.cohort.dicom_settings: series, roi
    image, ref = read_image_ref(image_path, case, dicom)
    check_image(image, case, image_path)
    qc: dict = {
        "case_id": case,
        "sequence": seq,
        "modality": cfg["modality"],
        "input_spacing": list(image.GetSpacing()),
        "input_size": list(image.GetSize()),
        "input_origin": list(image.GetOrigin()),
        "percentiles_before": _percentiles(image),
        "warnings": list(ref.warnings) if ref else [],
    }
    masks, mask_problems = {}, {}
    for reader, path in sorted(mask_paths.items()):
        try:
            if path is None:
                raise CaseError(case, f"mask_{reader}", "no mask given for this reader")
            if dicom_kind(path):  # RTSTRUCT / SEG: rasterised onto the image grid
                patterns = (dicom.get("roi") or {}).get(reader, ())
                raw, label = read_mask(path, case, image, ref, patterns), 1
                if not (ref and ref.frame_of_reference):
                    qc["warnings"].append(
                        f"case {case}: {path}: Frame of Reference not checked (image not DICOM)"
                    )
            else:
                raw = read_image(path, case)
                label = cfg["mask_label"] if reader != "organ" else "any"
            m = check_mask(image, raw, case, path, label)
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
    Path(out_qc_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_qc_json).write_text(json.dumps(qc, indent=1, sort_keys=True) + "\n")
    return qc


def median_spacing(image_paths, cases=None, dicom=None) -> list[float]:
    """Median voxel spacing over images (call with training images only), from
    headers. A DICOM folder's series is picked as rule prepare_image picks it:
    ``dicom`` holds each image's settings (radstudy.cohort.dicom_settings), ``cases``
    its case id; a study that cannot be read is left out with a warning (its case
    is excluded by prepare_image, naming the problem)."""
    image_paths = list(image_paths)
    cases = list(cases) if cases is not None else [Path(p).name for p in image_paths]
    dicom = list(dicom) if dicom is not None else [None] * len(image_paths)
    sp = []
    for p, case, settings in zip(image_paths, cases, dicom, strict=True):
        if Path(p).is_dir():  # DICOM study: the picked series' headers
            try:
                sp.append(study_spacing(p, case, settings))
            except CaseError as err:
                log.warning("median spacing: %s (left out)", err)
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
        sp.append(reader.GetSpacing())
    if not sp:
        raise ConfigError("preprocess.spacing median: no training image could be read")
    return [float(v) for v in np.median(np.asarray(sp), axis=0)]


# ------------------------------------------------------------------------ normalisation
# Nyul & Udupa (1999) histogram standardisation, written here (about 40 lines).
# The maintained implementation, intensity-normalization (NyulNormalize), follows
# the same algorithm (landmarks = percentiles 1, 10..90, 99; each training image's
# landmarks mapped linearly so that p1 -> s_min and p99 -> s_max, then averaged;
# applied as a piecewise-linear map, extrapolated beyond the outer landmarks).
# Its 3.0.1 release resolves with our pins (adds nibabel) but is not among the
# project's requirements, and 4.x needs Python >= 3.12; it also takes whole arrays
# in memory per call and has no notion of exclusion markers. Reimplemented on numpy.
def _landmarks(values: np.ndarray, percentiles) -> np.ndarray:
    return np.percentile(values, percentiles)


def warm_up(dicom: bool = False) -> None:
    """Import what a case's preparation or normalisation imports on first use, before
    a batch forks its case processes (radstudy.casestep.run_case_batch), so that it
    is imported once per batch: scikit-image's filters (Otsu: N4's mask, the
    foreground) take 0.44 s, measured, in every case's process otherwise; pydicom
    for a batch with DICOM cases."""
    from skimage.filters import threshold_otsu  # noqa: F401

    if dicom:
        import pydicom  # noqa: F401


def foreground(arr: np.ndarray) -> np.ndarray:
    """Body/foreground voxels: above the Otsu threshold (the same rule as N4's mask)."""
    from skimage.filters import threshold_otsu

    finite = arr[np.isfinite(arr)]
    if finite.size == 0 or np.ptp(finite) == 0:
        return np.isfinite(arr)
    return arr > threshold_otsu(finite)


def _read_array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _region_values(image_path, mask_path) -> np.ndarray | None:
    """Intensities inside the mask (None -> foreground); None if the mask is a marker."""
    img = _read_array(image_path).astype(np.float64)
    if mask_path is None:
        return img[foreground(img)]
    if marker_reason(mask_path) is not None:
        return None
    m = _read_array(mask_path).astype(bool)
    if m.shape != img.shape:
        log.warning(
            "fit_nyul: %s skipped (mask grid %s != image %s)", image_path, m.shape, img.shape
        )
        return None
    return img[m]


def _nyul_scale(cfg: dict) -> tuple[list[float], float, float]:
    """Checked percentiles and standard range (s_min, s_max) of a merged config."""
    pcts = [float(p) for p in cfg["nyul_percentiles"]]
    if len(pcts) < 3 or np.any(np.diff(pcts) <= 0) or pcts[0] < 0 or pcts[-1] > 100:
        raise ValueError(f"nyul_percentiles must increase within [0, 100]: {pcts}")
    s_min, s_max = (float(v) for v in cfg["nyul_scale"])
    return pcts, s_min, s_max


def nyul_case_landmarks(image_path, mask_path, cfg: dict) -> np.ndarray | None:
    """One training image's Nyul landmarks mapped linearly onto the standard range
    (p_low -> s_min, p_high -> s_max); None when the image is unusable (a marker, no
    usable region, a constant region: logged, as :func:`fit_nyul` skips it).

    ``mask_path`` None means the image's Otsu foreground. The standard scale is the
    mean of these over the training images (:func:`nyul_model`), so per-batch pieces
    of it can be computed apart and merged (:func:`nyul_piece`, :func:`merge_nyul`).
    """
    pcts, s_min, s_max = _nyul_scale(merged(cfg))
    if marker_reason(image_path) is not None:
        return None
    vals = _region_values(image_path, mask_path)
    if vals is None or vals.size < 10:
        log.warning("fit_nyul: %s skipped (no usable region)", image_path)
        return None
    lm = _landmarks(vals, pcts)
    if lm[-1] <= lm[0]:
        log.warning("fit_nyul: %s skipped (constant region)", image_path)
        return None
    return s_min + (lm - lm[0]) / (lm[-1] - lm[0]) * (s_max - s_min)


def nyul_model(mapped: list, region: str, cfg: dict) -> dict:
    """The Nyul model from the mapped landmarks of the usable training images (in
    case order): percentiles, standard landmarks (their mean), the region kind
    ("mask" or "foreground") and the number of images."""
    pcts, _, _ = _nyul_scale(merged(cfg))
    if not len(mapped):
        raise ValueError("fit_nyul: no usable training image")
    standard = np.mean(mapped, axis=0)
    return {
        "percentiles": pcts,
        "standard": [round(float(v), 9) for v in standard],
        "region": region,
        "n_images": len(mapped),
    }


def write_nyul(model: dict, out_json) -> None:
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps(model, indent=1, sort_keys=True) + "\n")


def fit_nyul(image_paths: list, mask_paths: list | None, out_json, cfg: dict) -> dict:
    """Learn the Nyul standard scale from the (training) images only.

    ``mask_paths`` gives a region mask per image (organ or ROI); a None entry (or
    ``mask_paths=None``) means the image's Otsu foreground. Images or masks that
    are exclusion markers are skipped. Writes ``out_json``: percentiles, standard
    landmarks, the region kind ("mask" or "foreground") and the number of images.
    """
    cfg = merged(cfg)
    _nyul_scale(cfg)
    if mask_paths is None:
        mask_paths = [None] * len(image_paths)
    mapped = []
    for img_p, mask_p in zip(image_paths, mask_paths, strict=True):
        lm = nyul_case_landmarks(img_p, mask_p, cfg)
        if lm is not None:
            mapped.append(lm)
    region = "foreground" if all(m is None for m in mask_paths) else "mask"
    model = nyul_model(mapped, region, cfg)
    write_nyul(model, out_json)
    return model


def _write_json_piece(obj, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, sort_keys=True) + "\n")


def nyul_piece(cases: list[str], images: list, masks: list | None, out_json, cfg: dict) -> dict:
    """Mapped Nyul landmarks (:func:`nyul_case_landmarks`) of one batch's
    training cases: {case: landmarks}; unusable images are left out (logged)."""
    masks = [None] * len(images) if masks is None else masks
    piece = {}
    for case, img, mask in zip(cases, images, masks, strict=True):
        lm = nyul_case_landmarks(img, mask, cfg)
        if lm is not None:
            piece[str(case)] = [float(v) for v in lm]
    _write_json_piece({"landmarks": piece}, out_json)
    return piece


def merge_nyul(pieces: list, region: str, out_json, cfg: dict) -> dict:
    """The Nyul model (:func:`nyul_model`) from per-batch pieces, the
    images in case order as :func:`fit_nyul` takes them."""
    landmarks: dict[str, list] = {}
    for path in pieces:
        landmarks.update(json.loads(Path(path).read_text(encoding="utf-8"))["landmarks"])
    mapped = [np.asarray(landmarks[c], dtype=float) for c in sorted(landmarks)]
    model = nyul_model(mapped, region, cfg)
    write_nyul(model, out_json)
    return model


def apply_nyul(arr: np.ndarray, region: np.ndarray, model: dict) -> np.ndarray:
    """Piecewise-linear map of this image's landmarks onto the standard ones,
    extended linearly beyond the outer landmarks (np.interp alone would clip)."""
    lm = _landmarks(region, model["percentiles"])
    # ties (e.g. a clipped region) would make the map a step: keep it strictly increasing
    lm = np.maximum.accumulate(lm + np.arange(len(lm)) * 1e-9 * max(1.0, np.ptp(lm)))
    std = np.asarray(model["standard"], float)
    out = np.interp(arr, lm, std)
    lo, hi = arr < lm[0], arr > lm[-1]
    slope_lo = (std[1] - std[0]) / (lm[1] - lm[0])
    slope_hi = (std[-1] - std[-2]) / (lm[-1] - lm[-2])
    out[lo] = std[0] + (arr[lo] - lm[0]) * slope_lo
    out[hi] = std[-1] + (arr[hi] - lm[-1]) * slope_hi
    return out


# ROI intensity quantiles recorded before/after normalisation (QC figure of the report)
QC_QUANTILES = [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99]


def normalize_case(
    case: str,
    image_path,
    mask_path,
    out_image,
    cfg: dict,
    nyul_json=None,
    region_mask_path=None,
    out_qc_json=None,
) -> dict:
    """Intensity normalisation of one prepared image (``cfg["normalization"]``).

    - ``zscore``: (x - mean) / sd over the ROI (``mask_path``; or the region mask
      when given), times ``cfg["scale"]`` (pyradiomics normalizeScale style).
    - ``nyul``: frozen landmarks from ``nyul_json`` (see :func:`fit_nyul`). This
      image's landmarks come from the same kind of region the landmarks were fitted
      on: ``region_mask_path`` if given, the Otsu foreground if the fit used the
      foreground (or ``nyul_region`` is "foreground"), else the ROI mask.
    - ``none``: the image unchanged (as float32).

    Returns (and writes to ``out_qc_json`` when given) the method, the ROI mean / sd
    after normalisation and the ROI intensity quantiles before and after it (the
    report's before/after histogram summary).
    """
    cfg = merged(cfg)
    method = cfg["normalization"]
    if method not in ("zscore", "nyul", "none"):
        raise ValueError(f"normalization must be zscore, nyul or none, not {method!r}")
    image = sitk.ReadImage(str(image_path))
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    roi = _read_array(mask_path).astype(bool)
    if roi.shape != arr.shape:
        raise CaseError(case, mask_path, f"mask grid {roi.shape} differs from image {arr.shape}")
    if not roi.any():
        raise CaseError(case, mask_path, "mask is empty (no labelled voxel)")
    region = roi
    if region_mask_path is not None and marker_reason(region_mask_path) is None:
        region = _read_array(region_mask_path).astype(bool)
        if region.shape != arr.shape or not region.any():
            raise CaseError(case, region_mask_path, "region mask is empty or on another grid")
    if method == "zscore":
        vals = arr[region]
        sd = vals.std()
        if not sd > 0:
            raise CaseError(case, image_path, "ROI intensities are constant; cannot z-score")
        out = (arr - vals.mean()) / sd * float(cfg["scale"])
    elif method == "nyul":
        if nyul_json is None:
            raise ValueError("normalization nyul needs the fitted landmarks (nyul_json)")
        model = json.loads(Path(nyul_json).read_text())
        use_fg = region is roi and (
            model.get("region") == "foreground" or cfg["nyul_region"] == "foreground"
        )
        values = arr[foreground(arr)] if use_fg else arr[region]
        if values.size < 10 or np.ptp(values) == 0:
            raise CaseError(case, image_path, "Nyul region is too small or constant")
        out = apply_nyul(arr, values, model)
    else:
        out = arr
    img = sitk.GetImageFromArray(out.astype(np.float32))
    img.CopyInformation(image)
    write_image(img, out_image)
    qc = {
        "case_id": case,
        "method": method,
        "roi_mean": float(out[roi].mean()),
        "roi_sd": float(out[roi].std()),
        "quantiles": QC_QUANTILES,
        "roi_before": [float(v) for v in np.percentile(arr[roi], QC_QUANTILES)],
        "roi_after": [float(v) for v in np.percentile(out[roi], QC_QUANTILES)],
    }
    if out_qc_json is not None:
        Path(out_qc_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_qc_json).write_text(json.dumps(qc, indent=1, sort_keys=True) + "\n")
    return qc
