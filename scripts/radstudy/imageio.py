"""Read and write images: NIfTI, NRRD, MHA and DICOM series (SimpleITK).

Only pixels and geometry travel on: DICOM tags (patient name, ID, dates) are
never copied into any output, because outputs are written from a fresh image
built from the pixel array and geometry alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radstudy.errors import CaseError


def read_image(path: str | Path, case: str) -> sitk.Image:
    """Read an image file or a DICOM series folder; errors exclude the case."""
    path = Path(path)
    if not path.exists():
        raise CaseError(case, path, "file does not exist")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise CaseError(case, path, "folder holds no DICOM series")
            if len(series) > 1:
                raise CaseError(
                    case,
                    path,
                    f"folder holds {len(series)} DICOM series; give one series per folder",
                )
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except CaseError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise CaseError(case, path, f"cannot read image ({first[:160]})") from err
    return strip_metadata(image)


def strip_metadata(image: sitk.Image) -> sitk.Image:
    """A copy holding only pixels + geometry (no DICOM/NIfTI header tags)."""
    clean = sitk.GetImageFromArray(
        sitk.GetArrayViewFromImage(image).copy(), isVector=image.GetNumberOfComponentsPerPixel() > 1
    )
    clean.CopyInformation(image) if clean.GetDimension() == image.GetDimension() else None
    return clean


def write_image(image: sitk.Image, path: str | Path) -> None:
    """Write deterministically (.nii.gz: no timestamps in ITK's NIfTI writer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def to_array(image: sitk.Image) -> np.ndarray:
    """Pixel array in numpy (z, y, x) order."""
    return sitk.GetArrayFromImage(image)


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Image from ``array`` with the geometry of ``reference``."""
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(reference)
    return img
