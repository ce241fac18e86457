"""Read and write images: NIfTI, NRRD, MHA (SimpleITK) and DICOM (radstudy.dicomio).

Only pixels and geometry travel on: DICOM tags (patient name, ID, dates) are
never copied into any output, because outputs are written from a fresh image
built from the pixel array and geometry alone.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radstudy.errors import CaseError


def read_image(path: str | Path, case: str, dicom: dict | None = None) -> sitk.Image:
    """Read an image file or a DICOM folder; errors exclude the case.

    A folder is a DICOM study: its one image series, or the one that ``dicom``
    (``radstudy.cohort.dicom_settings``) picks, is read (see radstudy.dicomio).
    """
    return read_image_ref(path, case, dicom)[0]


def read_image_ref(path: str | Path, case: str, dicom: dict | None = None):
    """``read_image`` plus the DICOM series' reference (UIDs a mask is checked
    against; None for a file)."""
    path = Path(path)
    if not path.exists():
        raise CaseError(case, path, "file does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise CaseError(case, path, "file is empty (0 bytes)")
    try:
        if path.is_dir():
            from radstudy.dicomio import read_study  # here: dicomio imports this module

            return read_study(path, case, dicom)
        image = sitk.ReadImage(str(path))
        if path.name.lower().endswith((".nii", ".nii.gz")):
            image = _check_nifti(path, case, image)
    except CaseError:
        raise
    except RuntimeError as err:
        raise CaseError(case, path, f"cannot read image ({_reader_error(err)[:160]})") from err
    return strip_metadata(image), None


def _reader_error(err: RuntimeError) -> str:
    """The telling line of an ITK reader error. ITK appends the C library's last
    error ("Reason: No such file or directory") even when the file exists and is only
    short: that line is left out, and so are the class/address prefixes."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Reason:")]
    if not lines:
        return "unreadable"
    return re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-fA-F]+\): |sitk::ERROR: )", "", lines[-1])


_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes FLOAT32, FLOAT64


def _check_nifti(path: Path, case: str, image: sitk.Image) -> sitk.Image:
    """Catch what ITK's NIfTI reader (ITK < 6) hides: it zero-fills a truncated
    file and turns every NaN/inf voxel into 0 without an error. Read the raw
    voxel bytes: a short file is a CaseError; non-finite voxels are put back so
    that QC sees (and reports) them."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            content = fh.read()
    except (EOFError, OSError, zlib.error) as err:
        raise CaseError(case, path, f"file is truncated or corrupt ({err})") from err
    for end in "<>":
        hdr_size = struct.unpack(end + "i", content[:4])[0] if len(content) >= 4 else 0
        if hdr_size in (348, 540):
            break
    else:
        return image
    if hdr_size == 348:  # NIfTI-1; single file only (magic "n+1")
        if content[344:347] != b"n+1":
            return image
        dims = struct.unpack(end + "8h", content[40:56])
        datatype, bitpix = struct.unpack(end + "2h", content[70:74])
        offset = int(struct.unpack(end + "f", content[108:112])[0])
    else:  # NIfTI-2
        if content[4:7] != b"n+2":
            return image
        datatype, bitpix = struct.unpack(end + "2h", content[12:16])
        dims = struct.unpack(end + "8q", content[16:80])
        offset = int(struct.unpack(end + "q", content[168:176])[0])
    ndim = min(max(int(dims[0]), 1), 7)
    n_vox = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + ndim]]))
    expected = n_vox * bitpix // 8
    if len(content) - offset < expected:
        raise CaseError(
            case,
            path,
            f"file is truncated ({max(len(content) - offset, 0)} of {expected} bytes of voxels)",
        )
    if datatype not in _NIFTI_FLOATS:
        return image
    raw = np.frombuffer(content, dtype=end + _NIFTI_FLOATS[datatype], count=n_vox, offset=offset)
    bad = ~np.isfinite(raw)
    if not bad.any():
        return image
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetNumberOfPixels() != n_vox:
        raise CaseError(case, path, f"image contains {int(bad.sum())} NaN/inf voxels")
    arr = sitk.GetArrayFromImage(image).astype(np.float64 if raw.itemsize == 8 else np.float32)
    arr.reshape(-1)[bad] = raw[bad]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def strip_metadata(image: sitk.Image) -> sitk.Image:
    """A copy holding only pixels + geometry (no DICOM/NIfTI header tags).

    Built from the pixel array, so no metadata dictionary entry (patient name,
    ID, dates, descriptions) can travel on to any output.
    """
    clean = sitk.GetImageFromArray(
        sitk.GetArrayViewFromImage(image).copy(), isVector=image.GetNumberOfComponentsPerPixel() > 1
    )
    if clean.GetDimension() == image.GetDimension():
        clean.CopyInformation(image)
    return clean


def write_image(image: sitk.Image, path: str | Path) -> None:
    """Write deterministically (.nii.gz: no timestamps in ITK's NIfTI writer), and
    make sure the whole file reached the disk (:func:`check_written`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    check_written(path)


def check_written(path: str | Path) -> None:
    """Raise OSError if the gzip file ``path`` is cut short.

    ITK's NIfTI writer does not fail when the disk fills up: it prints
    ``** ERROR: NWAD: wrote only 0 of ... bytes`` and leaves a truncated file, which
    the job would then declare complete. A file cut short has no gzip end-of-stream
    marker; reading it through (in chunks) finds that. ENOSPC when the disk is
    (nearly) full, EIO otherwise."""
    path = Path(path)
    if not path.name.endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as err:
        full = shutil.disk_usage(path.parent).free < 1 << 20
        code = errno.ENOSPC if full else errno.EIO
        raise OSError(
            code, f"{os.strerror(code)}: written incompletely ({err})", str(path)
        ) from err


def to_array(image: sitk.Image) -> np.ndarray:
    """Pixel array in numpy (z, y, x) order."""
    return sitk.GetArrayFromImage(image)


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Image from ``array`` with the geometry of ``reference``."""
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(reference)
    return img
