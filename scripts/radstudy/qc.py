"""Preflight QC of one case's image and masks; each problem is a one-line CaseError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radstudy.errors import CaseError

GEOMETRY_TOL = 1e-3  # relative tolerance for spacing / origin (mm) and direction


def check_image(image: sitk.Image, case: str, path: str | Path) -> None:
    """The image must be 3D, scalar, and free of NaN/inf voxels."""
    if image.GetDimension() != 3:
        raise CaseError(case, path, f"image is {image.GetDimension()}D, expected a 3D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(case, path, "image has several components per voxel (vector/RGB)")
    if min(image.GetSize()) < 2:
        raise CaseError(case, path, f"image size {image.GetSize()} is not a volume")
    arr = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(arr.dtype, np.floating):
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise CaseError(case, path, f"image contains {bad} NaN/inf voxels")


def _mm(values, digits: int) -> str:
    """A spacing / origin as plain numbers: (1, 1, 2.5)."""
    return "(" + ", ".join(f"{round(float(v), digits):g}" for v in values) + ")"


def _geometry_problem(image: sitk.Image, mask: sitk.Image) -> str | None:
    if mask.GetDimension() != image.GetDimension():
        return f"mask is {mask.GetDimension()}D but image is {image.GetDimension()}D"
    if mask.GetSize() != image.GetSize():
        return f"mask size {mask.GetSize()} differs from image size {image.GetSize()}"
    sp_i, sp_m = np.array(image.GetSpacing()), np.array(mask.GetSpacing())
    if not np.allclose(sp_i, sp_m, rtol=GEOMETRY_TOL, atol=1e-4):
        return f"mask spacing {_mm(sp_m, 4)} differs from image spacing {_mm(sp_i, 4)}"
    o_i, o_m = np.array(image.GetOrigin()), np.array(mask.GetOrigin())
    if not np.allclose(o_i, o_m, atol=max(GEOMETRY_TOL * sp_i.max(), 1e-3) * 10):
        return f"mask origin {_mm(o_m, 3)} differs from image origin {_mm(o_i, 3)}"
    if not np.allclose(image.GetDirection(), mask.GetDirection(), atol=GEOMETRY_TOL):
        return "mask direction (orientation) differs from the image's"
    return None


def check_mask(
    image: sitk.Image, mask: sitk.Image, case: str, path: str | Path, label: int | str = 1
) -> sitk.Image:
    """Validate a mask against its image; return a binary uint8 mask of the ROI label."""
    problem = _geometry_problem(image, mask)
    if problem:
        raise CaseError(case, path, problem)
    arr = sitk.GetArrayFromImage(mask)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise CaseError(case, path, "mask contains NaN voxels")
    labels = sorted(int(v) for v in np.unique(arr) if v != 0)
    if not labels:
        raise CaseError(case, path, "mask is empty (no labelled voxel)")
    if label == "any":
        roi = arr != 0
    else:
        if int(label) not in labels:
            raise CaseError(
                case,
                path,
                f"mask has labels {labels} but not {label} (set preprocess.mask_label)",
            )
        roi = arr == int(label)
    # a ROI touching every border in some axis is usually a mask of the wrong image
    if roi.all():
        raise CaseError(case, path, "mask covers the whole image")
    out = sitk.GetImageFromArray(roi.astype(np.uint8))
    out.CopyInformation(image)
    return out


def check_inside(image: sitk.Image, mask: sitk.Image, case: str, path: str | Path) -> None:
    """The ROI must lie on image data (not only on zero-padding outside the body)."""
    img = sitk.GetArrayViewFromImage(image)
    roi = sitk.GetArrayViewFromImage(mask).astype(bool)
    if roi.any() and np.ptp(img[roi]) == 0 and np.ptp(img) > 0 and img[roi][0] == img.min():
        raise CaseError(case, path, "mask lies outside the imaged region (ROI is all background)")
