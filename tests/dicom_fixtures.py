"""DICOM test data built from the real soft-tissue sarcoma MRI in tests/data/sts_mri:
a NIfTI volume written as a DICOM series (pydicom, one file per slice), its mask as
an RTSTRUCT (rt-utils) or a SEG (highdicom), and a whole study folder of a case
(tests/unit/test_dicomio.py, tests/integration/test_dicom_workflow.py).

Every series carries distinctive patient and institution strings (``IDENTIFIERS``)
that no output of the workflow may hold (its de-identification check)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sr.codedict import codes
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    MRImageStorage,
    generate_uid,
)
from rt_utils import RTStructBuilder

STS = Path(__file__).resolve().parent / "data" / "sts_mri"
PATIENT_NAME = "Doe^Janeqx"
PATIENT_ID = "PIDX778899"
BIRTH_DATE = "18640229"
ACCESSION = "ACCQX55213"
INSTITUTION = "Qzwx Memorial Hospital"
# what must never reach an output: each header value, and its parts
IDENTIFIERS = (
    PATIENT_NAME,
    "Janeqx",
    PATIENT_ID,
    "778899",
    BIRTH_DATE,
    ACCESSION,
    INSTITUTION,
    "Qzwx",
)


def write_series(
    image: sitk.Image,
    folder: Path,
    *,
    study: str,
    frame: str,
    description: str,
    modality: str = "MR",
    slope: float = 1.0,
    intercept: float = 0.0,
    slices=None,
    series: str | None = None,
    image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
) -> list[Dataset]:
    """One file per slice (pydicom) with patient tags; stored = (value - intercept) / slope."""
    folder.mkdir(parents=True, exist_ok=True)
    arr = sitk.GetArrayFromImage(image)
    series = series or generate_uid()
    d = np.array(image.GetDirection()).reshape(3, 3)
    dx, dy, _ = image.GetSpacing()
    out = []
    for i, k in enumerate(range(arr.shape[0]) if slices is None else slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
        ds.PatientBirthDate, ds.PatientSex = BIRTH_DATE, "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20200101", "120000", "1"
        ds.AccessionNumber, ds.InstitutionName = ACCESSION, INSTITUTION
        ds.ReferringPhysicianName, ds.Manufacturer = "", "radstudy"
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = modality, description, 1
        ds.InstanceNumber = k + 1
        ds.ImageType = list(image_type)
        ds.ImagePositionPatient = [
            f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))
        ]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in [*d[:, 0], *d[:, 1]]]
        ds.PixelSpacing = [f"{dy:.8f}", f"{dx:.8f}"]
        ds.SliceThickness = f"{image.GetSpacing()[2]:.6f}"
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        stored = np.round((arr[k].astype(np.float64) - intercept) / slope)
        assert np.abs(stored).max() < 32767
        ds.PixelData = stored.astype("<i2").tobytes()
        path = folder / f"{description.replace(' ', '_')}_{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(ds)
    return out


def write_rtstruct(series_dir: Path, masks, path: Path, names=("GTV",)) -> Path:
    """RTSTRUCT from rt-utils (it reads every image in series_dir as the series);
    ``masks``: one mask for every name, or a mask per name."""
    rt = RTStructBuilder.create_new(dicom_series_path=str(series_dir))
    masks = list(masks) if isinstance(masks, list | tuple) else [masks] * len(names)
    for name, mask in zip(names, masks, strict=True):
        roi = np.transpose(sitk.GetArrayFromImage(mask) > 0, (1, 2, 0))  # rows, cols, slices
        rt.add_roi(mask=roi, name=name)
    rt.save(str(path))
    return path


def write_seg(datasets: list[Dataset], mask: sitk.Image, path: Path, label="Tumour") -> Path:
    """DICOM SEG (highdicom) of the mask, one frame per source slice."""
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=sitk.GetArrayFromImage(mask) > 0,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label=label,
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Tumor,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        ],
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="radstudy",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(path)
    return path


def body_mask(image: sitk.Image, margin: int = 3) -> sitk.Image:
    """A 'Body' ROI: the image less a margin in-plane, on every slice."""
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[:, margin:-margin, margin:-margin] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def write_study(case: str, folder: Path, *, t1_slope=0.5, t1_intercept=-100.0) -> dict:
    """A case's study folder as an export holds it: the T1 series (with a rescale
    slope / intercept) and a second series (a 'T2' made from the T1) in subfolders,
    and an RTSTRUCT (Body, GTV) drawn on the T1 beside them."""
    image = sitk.ReadImage(str(STS / case / "MR_T1_image.nii.gz"))
    mask = sitk.ReadImage(str(STS / case / "MR_T1_mask.nii.gz"))
    study_uid, frame = generate_uid(), generate_uid()
    t1 = write_series(
        image,
        folder / "series1",
        study=study_uid,
        frame=frame,
        description="T1 TSE AX",
        slope=t1_slope,
        intercept=t1_intercept,
    )
    t2_image = sitk.Cast(image * 2 + 7, sitk.sitkFloat32)
    t2 = write_series(
        t2_image, folder / "series2", study=study_uid, frame=frame, description="t2 stir ax"
    )
    rtstruct = write_rtstruct(
        folder / "series1", [body_mask(image), mask], folder / "rtstruct.dcm", ("Body", "GTV")
    )
    return {
        "folder": folder,
        "image": image,
        "t2_image": t2_image,
        "mask": mask,
        "t1": t1,
        "t2": t2,
        "rtstruct": rtstruct,
        "frame": frame,
        "study_uid": study_uid,
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


def rotated(image: sitk.Image, degrees: float, axis: int = 0) -> sitk.Image:
    """The image with its direction turned by ``degrees`` about a patient axis
    (0: x, 1: y, 2: z) around its origin: the same voxels on an oblique grid."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    out = sitk.Image(image)
    out.SetDirection(tuple((rot @ np.array(image.GetDirection()).reshape(3, 3)).ravel()))
    return out


# transfer syntaxes pydicom cannot encode, GDCM (through SimpleITK) can: its compressor
GDCM_ENCODED = {JPEGLosslessSV1: "JPEG", JPEG2000Lossless: "JPEG2000"}


def _gdcm_codestream(frame: np.ndarray, syntax: str) -> bytes:
    """One frame's stored values encoded by GDCM's writer (``GDCM_ENCODED``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "f.dcm")
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("GDCMImageIO")
        writer.SetFileName(path)
        writer.UseCompressionOn()
        writer.SetCompressor(GDCM_ENCODED[syntax])
        writer.Execute(sitk.GetImageFromArray(frame[None]))
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == syntax, ds.file_meta.TransferSyntaxUID
        return next(generate_frames(ds.PixelData, number_of_frames=1))


def _compress(ds: Dataset, syntax: str) -> None:
    """``ds`` re-encoded: pydicom's encoders (RLE Lossless natively, JPEG-LS
    Lossless with pyjpegls), else GDCM's, frame by frame (``GDCM_ENCODED``)."""
    if syntax not in GDCM_ENCODED:
        ds.compress(syntax)
        return
    frames = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns))
    ds.PixelData = encapsulate([_gdcm_codestream(f, syntax) for f in frames])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax


def compress_series(src: Path, dst: Path, syntax: str) -> list[Path]:
    """Every file of ``src`` re-encoded with a compressed transfer syntax."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p)
        _compress(ds, syntax)
        ds.save_as(dst / p.name, enforce_file_format=True)
        out.append(dst / p.name)
    return out


def write_multiframe(
    src: Path, path: Path, *, shuffle: int | None = None, syntax: str | None = None
) -> Path:
    """The single-frame series in ``src`` as one Legacy Converted Enhanced MR
    Image (highdicom): per-frame PlanePositionSequence, shared orientation, pixel
    measures and rescale. ``shuffle``: a seed; the frames (pixels and per-frame
    groups together) are put in a random order, not the order of positions.
    ``syntax``: a compressed transfer syntax to encode the frames with."""
    datasets = [pydicom.dcmread(p) for p in sorted(src.iterdir())]
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(datasets, generate_uid(), 2, generate_uid(), 1)
    if shuffle is not None:
        perm = np.random.default_rng(shuffle).permutation(int(mf.NumberOfFrames))
        frames = mf.pixel_array[perm]
        per = mf.PerFrameFunctionalGroupsSequence
        mf.PerFrameFunctionalGroupsSequence = [per[i] for i in perm]
        mf.PixelData = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    if syntax is not None:
        _compress(mf, syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    mf.save_as(path)
    return path
