"""DICOM input: pick one image series from a study folder; RTSTRUCT / SEG masks.

* ``read_study``: a folder (subfolders included) may hold several series, RTSTRUCT
  and SEG files and localisers. Image series are grouped by SeriesInstanceUID
  (pydicom headers) and one is picked by ``series`` settings (SeriesDescription
  patterns, Modality, SeriesInstanceUID); none or several left is a CaseError
  naming the candidates. Localisers (ImageType LOCALIZER, or a slice whose
  orientation or size differs from the series' majority) are dropped. Slices
  are ordered by their position along the slice normal (never by file name or
  InstanceNumber, which may be missing); the direction cosines are
  ImageOrientationPatient's as written (an oblique series keeps its tilt). The
  slice spacing comes from the positions (a mixed SliceThickness is harmless);
  uneven spacing (a gap) is an error or, with ``uneven_slices: resample``,
  linearly interpolated onto a regular grid. An enhanced (multi-frame) file is
  read as its frames, each placed by its per-frame functional groups
  (PlanePositionSequence; orientation, pixel measures and rescale per frame or
  shared); one without per-frame groups is a CaseError. Compressed transfer
  syntaxes are decoded by GDCM (tested: RLE, JPEG Lossless, JPEG-LS and JPEG
  2000 Lossless); one it cannot decode is a CaseError naming the transfer syntax.
* ``read_mask``: an RTSTRUCT (ROI chosen by name patterns) or a DICOM SEG
  (segment chosen by label pattern or number) rasterised onto the image grid,
  after checking that it shares the image's Frame of Reference UID.
* ``study_spacing``: the spacing ``read_study`` gives, from headers alone
  (``preprocess.spacing: median`` over the training studies).
* ``export_seg``: a mask (a pseudo-reader's, on the prepared grid) written as a
  DICOM SEG on the picked series, one frame per source slice (highdicom);
  ``segmentation.export: dicom_seg``. Unlike every other output it names the
  patient (copied from the source files, as a SEG must), so it lives in export/.
* ``export_rtstruct``: the same mask as an RTSTRUCT (rt-utils' contours, each
  point placed on its own source slice); ``segmentation.export: rtstruct``.

Only pixels and geometry leave this module (images go through
``imageio.strip_metadata``); no tag value is copied into an output under
results/ (only the SEG and RTSTRUCT files of ``export_seg`` and
``export_rtstruct``, under export/, carry the source's patient and study modules).

Libraries: pydicom reads headers, GDCM (through SimpleITK) decodes pixels
(pydicom those of multi-frame files, GDCM where it has no decoder), highdicom
reads and writes SEG, rt-utils writes RTSTRUCT. Written here, because no library
does it for a whole export folder: grouping and picking the series by the config's
rule, dropping localisers, the uneven-spacing policy, the RTSTRUCT fill and the
placing of exported contour points (see each function).
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radstudy.errors import CaseError
from radstudy.imageio import strip_metadata

# Modalities of DICOM objects that are not image slices (masks, reports, plans)
NOT_IMAGES = {"RTSTRUCT", "SEG", "SR", "PR", "KO", "RTPLAN", "RTDOSE", "RTRECORD", "REG", "DOC"}
MASK_MODALITIES = ("RTSTRUCT", "SEG")


@dataclass
class DicomRef:
    """What a mask is checked against: the image series' UIDs (never written out)."""

    series_uid: str
    frame_of_reference: str | None
    warnings: list = field(default_factory=list)


@dataclass
class _Series:
    uid: str
    description: str
    modality: str
    files: list = field(default_factory=list)
    headers: list = field(default_factory=list)

    def label(self, folder: Path) -> str:
        where = self.files[0].parent.relative_to(folder).as_posix() if self.files else "."
        desc = self.description or "(no description)"
        return f"{desc!r} ({self.modality}, {len(self.files)} files in {where})"


def _pydicom():
    import pydicom

    return pydicom


def dicom_kind(path: str | Path) -> str | None:
    """'RTSTRUCT' or 'SEG' when ``path`` is such a DICOM file, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
        return None
    modality = str(ds.get("Modality", "")).upper()
    return modality if modality in MASK_MODALITIES else None


# --------------------------------------------------------------------- images


def _scan(folder: Path) -> tuple[dict, Counter]:
    """Image series in ``folder`` (recursive) by SeriesInstanceUID; localiser
    files (ImageType LOCALIZER) left out, counted by series."""
    pydicom = _pydicom()
    series: dict[str, _Series] = {}
    localisers: Counter = Counter()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
                continue  # not DICOM (DICOMDIR-less exports carry readme/xml files)
            modality = str(ds.get("Modality", "")).upper()
            if modality in NOT_IMAGES or "Rows" not in ds or "SeriesInstanceUID" not in ds:
                continue
            uid = str(ds.SeriesInstanceUID)
            if any("LOCALIZER" in str(t).upper() for t in ds.get("ImageType", [])):
                localisers[uid] += 1
                continue
            s = series.setdefault(uid, _Series(uid, str(ds.get("SeriesDescription", "")), modality))
            s.files.append(p)
            s.headers.append(ds)
    return series, localisers


def _matches(value: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in patterns)


def select_series(folder: str | Path, case: str, rule: dict | None = None) -> tuple[_Series, int]:
    """The one image series of ``folder`` that ``rule`` picks (see module doc)."""
    folder = Path(folder)
    rule = rule or {}
    found, localisers = _scan(folder)
    if not found:
        raise CaseError(case, folder, "folder holds no DICOM image series")
    cands = list(found.values())
    if rule.get("uid"):
        cands = [s for s in cands if s.uid == rule["uid"]]
    if rule.get("modality"):
        cands = [s for s in cands if s.modality == str(rule["modality"]).upper()]
    if rule.get("description"):
        pats = rule["description"]
        cands = [
            s for s in cands if _matches(s.description, [pats] if isinstance(pats, str) else pats)
        ]
    if len(cands) == 1:
        return cands[0], localisers[cands[0].uid]
    listed = "; ".join(s.label(folder) for s in (cands or found.values()))
    # the rule as the config wrote it; a SeriesInstanceUID from the sheet is not repeated
    said = {k: v for k, v in rule.items() if k != "uid" and v}
    said = str(said | ({"uid": "from the sheet"} if rule.get("uid") else {}))
    if not cands:
        raise CaseError(
            case, folder, f"no DICOM series matches cohort.series {said} (series: {listed})"
        )
    what = (
        "cohort.series does not pick one" if not rule else f"cohort.series {said} matches several"
    )
    raise CaseError(case, folder, f"folder holds {len(cands)} DICOM series; {what}: {listed}")


def _orientation(ds) -> tuple:
    return tuple(round(float(v), 3) for v in ds.get("ImageOrientationPatient", []))


@dataclass
class _Plan:
    """A series' slices in order, from headers alone (what read_study reads).

    A slice is a single-frame file (``frames`` None) or a frame of a multi-frame
    file (``frames`` its index; ``headers`` a per-frame header built from the
    functional groups, see ``_frame_headers``)."""

    files: list
    headers: list
    frames: list
    pos: np.ndarray
    ref: DicomRef
    resample: bool


# per-frame header tags of an enhanced (multi-frame) image: functional group and tags
_FRAME_TAGS = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
}


def _is_multiframe(ds) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _frame_headers(ds, case, path: Path) -> list:
    """One header per frame of an enhanced (multi-frame) image: its geometry and
    rescale from the per-frame functional groups, else the shared ones, else the
    top level (Enhanced MR / CT, legacy converted enhanced images)."""
    from pydicom.dataset import Dataset

    per = ds.get("PerFrameFunctionalGroupsSequence")
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if not per or len(per) != n:
        raise CaseError(
            case,
            path,
            f"multi-frame file of {n} frames without per-frame functional groups (frame "
            "positions unknown); export the series as single-frame slices",
        )
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    out = []
    for item in per:
        h = Dataset()
        h.Rows, h.Columns = ds.Rows, ds.Columns
        if "FrameOfReferenceUID" in ds:
            h.FrameOfReferenceUID = ds.FrameOfReferenceUID
        for group, tags in _FRAME_TAGS.items():
            for tag in tags:
                for src in (item, shared):
                    seq = src.get(group)
                    if seq and tag in seq[0]:
                        setattr(h, tag, seq[0][tag].value)
                        break
                else:
                    if tag in ds:
                        setattr(h, tag, ds[tag].value)
        if hasattr(ds, "file_meta"):
            h.file_meta = ds.file_meta
        out.append(h)
    return out


def _plan(folder: Path, case: str, settings: dict) -> _Plan:
    """Pick the series, drop localisers, order the slices and check their geometry
    and spacing: headers only, no pixel is decoded."""
    uneven = settings.get("uneven_slices", "error")
    series, localisers = select_series(folder, case, settings.get("series"))
    warnings = []
    # slices: single-frame files, and each frame of a multi-frame (enhanced) file
    all_files, all_headers, all_frames = [], [], []
    for f, h in zip(series.files, series.headers, strict=True):
        if _is_multiframe(h):
            fhs = _frame_headers(h, case, f)
            all_frames += list(range(len(fhs)))
        else:
            fhs = [h]
            all_frames.append(None)
        all_files += [f] * len(fhs)
        all_headers += fhs
    # localisers kept in the series: slices whose orientation / size is not the majority's
    shape = Counter((_orientation(h), int(h.Rows), int(h.Columns)) for h in all_headers)
    major = shape.most_common(1)[0][0]
    keep = [
        i
        for i, h in enumerate(all_headers)
        if (_orientation(h), int(h.Rows), int(h.Columns)) == major
    ]
    localisers += len(all_headers) - len(keep)
    if localisers:
        warnings.append(f"case {case}: {folder}: {localisers} localiser image(s) dropped")
    files = [all_files[i] for i in keep]
    headers = [all_headers[i] for i in keep]
    frames = [all_frames[i] for i in keep]
    if len(major[0]) != 6 or any(
        t not in h for h in headers for t in ("ImagePositionPatient", "PixelSpacing")
    ):
        raise CaseError(case, folder, "DICOM series lacks its geometry (orientation/position)")
    # the normal from the tags as written (the rounded majority key would tilt it,
    # an oblique series' slice spacing with it)
    iop = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    # slices are ordered by position along the normal, never by file name or InstanceNumber
    pos = np.array([np.dot(normal, [float(v) for v in h.ImagePositionPatient]) for h in headers])
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    frames = [frames[i] for i in order]
    uids = {str(h.get("FrameOfReferenceUID", "")) for h in headers} - {""}
    if len(uids) > 1:
        raise CaseError(case, folder, "DICOM series spans several Frames of Reference")
    ref = DicomRef(series.uid, uids.pop() if uids else None, warnings)
    if len(files) > 1 and np.min(np.diff(pos)) < 1e-3:
        n = int(np.sum(np.diff(pos) < 1e-3))
        raise CaseError(
            case, folder, f"{n} slices share a position (several acquisitions in one series?)"
        )
    steps = np.diff(pos)
    resample = False
    if len(steps) > 1 and np.ptp(steps) > max(0.01 * np.median(steps), 0.01):
        if uneven != "resample":
            raise CaseError(
                case,
                folder,
                f"uneven slice spacing ({steps.min():.3g} to {steps.max():.3g} mm: a gap or mixed "
                "slices); set cohort.uneven_slices: resample to interpolate",
            )
        warnings.append(
            f"case {case}: {folder}: uneven slices ({steps.min():.3g} to {steps.max():.3g} mm) "
            f"resampled to {np.median(steps):.3g} mm"
        )
        resample = True
    return _Plan(files, headers, frames, pos, ref, resample)


def _slice_step(plan: _Plan) -> float:
    """The volume's slice spacing: the mean step (the median when resampled), or
    the header's for a single slice."""
    pos, first = plan.pos, plan.headers[0]
    if len(pos) == 1:
        return float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)))
    if plan.resample:
        return float(np.median(np.diff(pos)))
    return float((pos[-1] - pos[0]) / (len(pos) - 1))


def read_study(
    folder: str | Path, case: str, settings: dict | None = None
) -> tuple[sitk.Image, DicomRef]:
    """Read the selected series of a study folder; pixels + geometry only."""
    folder = Path(folder)
    plan = _plan(folder, case, settings or {})
    if plan.resample:
        return _resample_slices(plan, case, folder), plan.ref
    return _read_files(plan, case, folder), plan.ref


def study_spacing(folder: str | Path, case: str, settings: dict | None = None) -> tuple:
    """Voxel spacing (x, y, z) that ``read_study`` gives the series, from headers
    only (``preprocess.median_spacing`` over a cohort's training studies)."""
    plan = _plan(Path(folder), case, settings or {})
    dy, dx = (float(v) for v in plan.headers[0].PixelSpacing)
    return (dx, dy, _slice_step(plan))


def _syntax(header) -> str:
    uid = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "transfer syntax unknown"
    name = uid.name if uid.name != str(uid) else "not a known one"
    return f"transfer syntax {name} ({uid})"


def _compressed(uid) -> bool:
    try:
        return not uid.is_transfer_syntax or uid.is_compressed
    except ValueError:  # a private transfer syntax
        return True


def _unreadable(case, folder, path, header) -> CaseError:
    uid = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
    if uid is not None and _compressed(uid):
        return CaseError(
            case,
            folder,
            f"cannot decode DICOM file {Path(path).name}: {_syntax(header)} is not supported; "
            "convert the series to uncompressed DICOM (e.g. gdcmconv --raw)",
        )
    return CaseError(
        case, folder, f"cannot read DICOM file {Path(path).name} ({_syntax(header)}; corrupt?)"
    )


def _decode_frames(path) -> np.ndarray:
    """Stored values of every frame of a multi-frame file (pydicom's decoders)."""
    arr = np.asarray(_pydicom().dcmread(path).pixel_array, np.float64)
    return arr.reshape(-1, *arr.shape[-2:])


def _read_multiframe(path, rescales: dict, header, case, folder) -> dict:
    """Frame index -> rescaled frame, for the frames in ``rescales`` (index ->
    slope, intercept of its functional groups). pydicom decodes, each frame gets
    its own rescale. Where pydicom has no decoder for the transfer syntax (JPEG
    Lossless without pylibjpeg), GDCM reads the file, if its frames share one
    rescale (GDCM applies one to the whole file)."""
    try:
        stored = _decode_frames(path)
        return {k: stored[k] * slope + icpt for k, (slope, icpt) in rescales.items()}
    except Exception as err:  # noqa: BLE001 - pydicom's decoders raise many types
        first = err
    if len(set(rescales.values())) == 1:
        try:
            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path), sitk.sitkFloat64))
        except RuntimeError:
            pass
        else:
            arr = arr.reshape(-1, *arr.shape[-2:])
            if len(arr) > max(rescales):
                return {k: arr[k] for k in rescales}
    raise _unreadable(case, folder, path, header) from first


def _rescale(header) -> tuple:
    return (
        float(header.get("RescaleSlope", 1.0) or 1.0),
        float(header.get("RescaleIntercept", 0.0) or 0.0),
    )


def _read_slices(plan: _Plan, case, folder) -> np.ndarray:
    # One file at a time (GDCM via SimpleITK): each slice gets its own rescale
    # slope/intercept, which a series reader takes from the first file only. A
    # multi-frame file is decoded once; each frame gets the rescale of its
    # functional groups.
    multi: dict = {}
    for f, h, k in zip(plan.files, plan.headers, plan.frames, strict=True):
        if k is not None:
            multi.setdefault(f, {"header": h, "rescales": {}})["rescales"][k] = _rescale(h)
    frames = {
        f: _read_multiframe(f, m["rescales"], m["header"], case, folder) for f, m in multi.items()
    }
    out = []
    for f, h, k in zip(plan.files, plan.headers, plan.frames, strict=True):
        if k is not None:
            out.append(frames[f][k])
            continue
        try:
            img = sitk.ReadImage(str(f), sitk.sitkFloat64)
        except RuntimeError as err:
            raise _unreadable(case, folder, f, h) from err
        arr = sitk.GetArrayFromImage(img)
        out.append(arr.reshape(arr.shape[-2:]))
    return np.stack(out)


def _volume(arr: np.ndarray, header, spacing_z: float) -> sitk.Image:
    """Image from slices (z, y, x) and the first slice's DICOM geometry tags."""
    if np.all(arr == np.round(arr)) and np.abs(arr).max(initial=0) < 2**31:
        small = arr.min(initial=0) >= -32768 and arr.max(initial=0) <= 32767
        arr = arr.astype(np.int16 if small else np.int32)
    else:
        arr = arr.astype(np.float32)
    iop = np.array([float(v) for v in header.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    dy, dx = (float(v) for v in header.PixelSpacing)  # row spacing, column spacing
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((dx, dy, float(spacing_z)))
    img.SetOrigin(tuple(float(v) for v in header.ImagePositionPatient))
    img.SetDirection(tuple(np.column_stack([row, col, np.cross(row, col)]).ravel()))
    return img


def _read_files(plan: _Plan, case, folder) -> sitk.Image:
    arr = _read_slices(plan, case, folder)
    return strip_metadata(_volume(arr, plan.headers[0], _slice_step(plan)))


def _resample_slices(plan: _Plan, case, folder) -> sitk.Image:
    # Linear interpolation between neighbouring slices onto a regular grid of the
    # median spacing. No library reads an unevenly spaced series onto a regular grid:
    # ITK's series reader assumes even spacing, highdicom refuses such a series.
    arrays = _read_slices(plan, case, folder)
    pos = plan.pos
    step = _slice_step(plan)
    n = int(round((pos[-1] - pos[0]) / step)) + 1
    targets = pos[0] + step * np.arange(n)
    hi = np.clip(np.searchsorted(pos, targets, side="left"), 1, len(pos) - 1)
    lo = hi - 1
    w = np.clip((targets - pos[lo]) / (pos[hi] - pos[lo]), 0.0, 1.0)[:, None, None]
    out = arrays[lo] * (1 - w) + arrays[hi] * w
    return strip_metadata(_volume(out, plan.headers[0], step))


# ---------------------------------------------------------------------- masks


def _pick(names: list, patterns, case, path, what: str) -> int:
    """Index of the one name matched by the first pattern that matches any."""
    if not patterns:
        if len(names) == 1:
            return 0
        raise CaseError(case, path, f"{len(names)} {what}s and no cohort.roi patterns: {names}")
    for pat in patterns:
        hits = [
            i for i, n in enumerate(names) if fnmatch.fnmatchcase(str(n).lower(), str(pat).lower())
        ]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise CaseError(
                case, path, f"{what} pattern {pat!r} matches several: {[names[i] for i in hits]}"
            )
    raise CaseError(case, path, f"no {what} matches {list(patterns)} ({what}s present: {names})")


def _check_frame(ref: DicomRef | None, frame: str | None, case, path) -> None:
    if ref is not None and ref.frame_of_reference and frame and frame != ref.frame_of_reference:
        raise CaseError(
            case,
            path,
            "Frame of Reference UID differs from the image's (mask drawn on another scan)",
        )


def read_mask(
    path: str | Path,
    case: str,
    image: sitk.Image,
    ref: DicomRef | None = None,
    patterns=(),
) -> sitk.Image:
    """An RTSTRUCT or SEG file rasterised onto ``image``'s grid (uint8, 0/1)."""
    path = Path(path)
    kind = dicom_kind(path)
    if kind == "RTSTRUCT":
        return _read_rtstruct(path, case, image, ref, patterns)
    if kind == "SEG":
        return _read_seg(path, case, image, ref, patterns)
    raise CaseError(case, path, "not a DICOM RTSTRUCT or SEG file")


def _read_rtstruct(path: Path, case, image: sitk.Image, ref, patterns) -> sitk.Image:
    # Written here: highdicom does not read RTSTRUCT, and rt-utils' reader
    # (RTStruct.get_roi_mask_by_name) returns a columns x rows array (wrong for a
    # non-square image, e.g. 174 x 158) and takes every image in a folder as one
    # series. The polygons are filled on the image grid itself: vertices rounded to
    # pixels, boundary pixels included (as rt-utils' cv2.fillPoly does), contours
    # on one slice combined even-odd (a contour inside another is a hole).
    from skimage.draw import line, polygon

    ds = _pydicom().dcmread(path)
    rois = {int(r.ROINumber): r for r in ds.get("StructureSetROISequence", [])}
    numbers = list(rois)
    names = [str(rois[n].get("ROIName", "")) for n in numbers]
    if not names:
        raise CaseError(case, path, "RTSTRUCT holds no ROI")
    number = numbers[_pick(names, patterns, case, path, "ROI")]
    frame = str(rois[number].get("ReferencedFrameOfReferenceUID", "")) or None
    _check_frame(ref, frame, case, path)
    contours = []
    for item in ds.get("ROIContourSequence", []):
        if int(item.ReferencedROINumber) == number:
            contours = [c for c in item.get("ContourSequence", []) if "ContourData" in c]
    if not contours:
        raise CaseError(case, path, f"ROI {names[numbers.index(number)]!r} has no contour")
    size = image.GetSize()
    out = np.zeros(size[::-1], np.uint8)
    off = 0
    for c in contours:
        pts = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
        idx = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in pts])
        k = int(round(float(np.median(idx[:, 2]))))
        if not 0 <= k < size[2] or np.ptp(idx[:, 2]) > 0.5:
            off += 1
            continue
        x, y = np.round(idx[:, 0]), np.round(idx[:, 1])
        layer = np.zeros(size[1::-1], np.uint8)
        shape = layer.shape
        layer[polygon(y, x, shape)] = 1
        edges = [line(int(y[i - 1]), int(x[i - 1]), int(y[i]), int(x[i])) for i in range(len(x))]
        rr, cc = np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])
        inside = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        layer[rr[inside], cc[inside]] = 1
        out[k] ^= layer
    if off == len(contours):
        raise CaseError(case, path, "no contour lies on the image's slices")
    mask = sitk.GetImageFromArray(out)
    mask.CopyInformation(image)
    return mask


def _read_seg(path: Path, case, image: sitk.Image, ref, patterns) -> sitk.Image:
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as err:  # noqa: BLE001 - highdicom raises many types for bad files
        raise CaseError(case, path, f"cannot read DICOM SEG ({type(err).__name__})") from err
    numbers = list(seg.segment_numbers)
    labels = [str(seg.get_segment_description(n).segment_label) for n in numbers]
    if any(str(p).isdigit() and int(p) in numbers for p in patterns):
        number = next(int(p) for p in patterns if str(p).isdigit() and int(p) in numbers)
    else:
        number = numbers[
            _pick(labels, [p for p in patterns if not str(p).isdigit()], case, path, "segment")
        ]
    _check_frame(ref, str(seg.get("FrameOfReferenceUID", "")) or None, case, path)
    try:
        vol = seg.get_volume(segment_numbers=[number], combine_segments=True, dtype=np.uint8)
    except (ValueError, RuntimeError) as err:
        raise CaseError(case, path, f"DICOM SEG frames do not form a volume ({err})") from err
    arr = vol.array
    affine = vol.affine
    # highdicom's array axes are (slice, row, column); ITK's index is (column, row, slice)
    steps = [affine[:3, 2], affine[:3, 1], affine[:3, 0]]
    spacing = [float(np.linalg.norm(s)) for s in steps]
    seg_img = sitk.GetImageFromArray((arr > 0).astype(np.uint8))
    seg_img.SetSpacing(spacing)
    seg_img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    seg_img.SetDirection(
        tuple(np.column_stack([s / n for s, n in zip(steps, spacing, strict=True)]).ravel())
    )
    return sitk.Resample(
        seg_img, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )


# --------------------------------------------------------------------- export


def _slice_grid(header, spacing_z: float) -> sitk.Image:
    """An empty one-slice image on a source slice's plane (nearest-neighbour target)."""
    return _volume(
        np.zeros((1, int(header.Rows), int(header.Columns)), np.uint8), header, spacing_z
    )


def _source_frames(mask: sitk.Image, plan: _Plan) -> np.ndarray:
    """``mask`` (> 0) on each source slice's plane by nearest neighbour: (slice,
    row, column) in the plan's order (an unevenly spaced series too)."""
    step = _slice_step(plan)
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    return np.concatenate(
        [
            sitk.GetArrayFromImage(
                sitk.Resample(
                    binary, _slice_grid(h, step), sitk.Transform(), sitk.sitkNearestNeighbor, 0
                )
            )
            for h in plan.headers
        ]
    )


def export_seg(
    mask: sitk.Image,
    folder: str | Path,
    case: str,
    path: str | Path,
    settings: dict | None = None,
    *,
    label: str,
    algorithm: str,
    version: str = "0",
) -> Path:
    """Write ``mask`` (any grid: a pseudo-reader's mask on the prepared grid) as a
    DICOM SEG of the study's series that ``settings`` picks, one frame per source
    slice, so that a viewer shows it on the images it came from.

    The mask is carried onto each source slice's plane by nearest neighbour (an
    unevenly spaced series too: every frame lies on its own slice). highdicom
    writes the SEG: it references the source series and copies the patient and
    study modules from the source files (a SEG must name the patient to be loaded
    with the images), so the file is not de-identified; it is written outside
    ``results/``. ``read_mask`` reads it back.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    folder, path = Path(folder), Path(path)
    plan = _plan(folder, case, settings or {})
    frames = _source_frames(mask, plan)
    if not frames.any():
        raise CaseError(case, path, f"mask {label!r} is empty on the source series: no SEG")
    files = list(dict.fromkeys(plan.files))
    sources = [_pydicom().dcmread(f) for f in files]
    if any(k is not None for k in plan.frames):
        # a multi-frame source: one SEG frame per source frame, in the file's order
        if len(files) != 1:
            raise CaseError(
                case, folder, "SEG export onto several multi-frame files is not supported"
            )
        full = np.zeros((int(sources[0].NumberOfFrames), *frames.shape[1:]), frames.dtype)
        full[plan.frames] = frames
        frames = full
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Tumor,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm, family=codes.cid7162.ArtificialIntelligence, version=version
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=9000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="radstudy",
        manufacturer_model_name=algorithm,
        software_versions=version,
        device_serial_number="0",
        series_description=f"radstudy {label}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def export_rtstruct(
    mask: sitk.Image,
    folder: str | Path,
    case: str,
    path: str | Path,
    settings: dict | None = None,
    *,
    label: str,
    algorithm: str,
    version: str = "0",
) -> Path:
    """Write ``mask`` (any grid: a pseudo-reader's mask on the prepared grid) as an
    RTSTRUCT of the study's series that ``settings`` picks: one ROI named ``label``,
    closed planar contours on the source slices (``segmentation.export: rtstruct``).

    The mask is carried onto each source slice's plane by nearest neighbour, as
    for ``export_seg``. rt-utils builds the RTSTRUCT (references to the series, its
    slices and Frame of Reference, patient and study modules copied from the
    source files, so the file is not de-identified and is written outside
    ``results/``) and traces each slice's contours (OpenCV, through the centres of
    the boundary pixels; a hole is a contour of its own). Two things are not left
    to it: it is given the picked series' headers, not a folder (its
    ``create_new`` reads every image under a folder as one series and decodes
    every pixel), and each contour point is placed again on its own slice's
    plane from its pixel index (rt-utils places points with the mean slice step
    and takes PixelSpacing's row spacing for columns: wrong for an unevenly
    spaced series or non-square pixels). ``read_mask`` reads it back as the same
    pixels but for a few boundary ones: the ring of pixels around a hole (its
    contour runs through their centres) comes back as hole (Dice 0.9999 to 1.0
    on the sarcoma masks, 0.98 on a ring).
    """
    from rt_utils import image_helper
    from rt_utils.ds_helper import create_rtstruct_dataset
    from rt_utils.rtstruct import RTStruct

    folder, path = Path(folder), Path(path)
    plan = _plan(folder, case, settings or {})
    if any(k is not None for k in plan.frames):
        raise CaseError(
            case,
            folder,
            "RTSTRUCT export onto a multi-frame (enhanced) series is not supported; "
            "use segmentation.export: dicom_seg",
        )
    frames = _source_frames(mask, plan)
    if not frames.any():
        raise CaseError(case, path, f"mask {label!r} is empty on the source series: no RTSTRUCT")
    headers = plan.headers  # the plan's own copies, in slice order
    for tag in ("StudyDate", "StudyTime", "StudyID"):
        if tag not in headers[0]:
            setattr(headers[0], tag, "")  # type 2 in the study module; rt-utils needs them
    rt = RTStruct(headers, create_rtstruct_dataset(headers))
    # rt-utils' mask axes: (rows, columns, slices), slices in the order given
    rt.add_roi(
        mask=np.transpose(frames > 0, (1, 2, 0)),
        name=label,
        description=algorithm,
        roi_generation_algorithm=0,  # AUTOMATIC
    )
    # each point again on its own slice: pixel index from rt-utils' matrix, then
    # the slice's position, orientation and spacing
    to_pixel = np.linalg.inv(
        image_helper.get_pixel_to_patient_transformation_matrix(headers).astype(np.float64)
    )
    slice_of = {str(h.SOPInstanceUID): k for k, h in enumerate(headers)}
    for contour in rt.ds.ROIContourSequence[-1].ContourSequence:
        h = headers[slice_of[str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)]]
        pts = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
        cr = np.round((np.c_[pts, np.ones(len(pts))] @ to_pixel.T)[:, :2])
        iop = np.array([float(v) for v in h.ImageOrientationPatient])
        dy, dx = (float(v) for v in h.PixelSpacing)
        origin = np.array([float(v) for v in h.ImagePositionPatient])
        pts = origin + np.outer(cr[:, 0] * dx, iop[:3]) + np.outer(cr[:, 1] * dy, iop[3:])
        contour.ContourData = [f"{v:.4f}" for v in pts.ravel()]
        contour.NumberOfContourPoints = len(pts)
    ds = rt.ds
    ds.Manufacturer = "radstudy"
    ds.ManufacturerModelName = algorithm[:64]
    ds.SoftwareVersions = version
    del ds.InstitutionName  # rt-utils writes its own lab's name
    ds.ReferringPhysicianName = headers[0].get("ReferringPhysicianName", "")
    ds.AccessionNumber = headers[0].get("AccessionNumber", "")
    ds.SeriesDescription = f"radstudy {label}"[:64]
    ds.SeriesNumber = 9000
    ds.InstanceNumber = 1
    ds.StructureSetLabel = label[:16]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
