"""Image I/O: NIfTI / NRRD / MHA round trips with geometry, DICOM series written
with SimpleITK/GDCM (with patient tags) and read back, and no patient tag in
anything the workflow writes (images, masks, QC JSON)."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest
import SimpleITK as sitk

from radstudy import imageio
from radstudy import preprocess as pp
from radstudy.errors import CaseError
from radstudy.qc import check_image

CASE = "HB012"


def assert_one_line(err: CaseError, path, *words):
    msg = str(err)
    assert "\n" not in msg and msg.startswith(f"case {CASE}: {path}: ")
    for w in words:
        assert w in msg, msg


def make_image(shape=(6, 10, 12), seed=0):
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray(rng.normal(100, 10, shape).astype(np.float32))
    img.SetSpacing((0.8, 0.8, 2.5))
    img.SetOrigin((-10.0, 5.0, 30.0))
    return img


# ------------------------------------------------------------------ file formats

OBLIQUE = tuple(
    sitk.VersorTransform((0.2, 0.1, 0.9), 0.3).GetMatrix()
)  # a rotation: oblique acquisition


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_formats_round_trip_pixels_and_geometry(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    arr = rng.integers(-500, 1500, (5, 7, 9)).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 3.0))
    img.SetOrigin((-20.5, 11.0, 4.25))
    img.SetDirection(OBLIQUE)
    img.SetMetaData("descrip", "Doe^Janeqx")  # header text must not travel on
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(img, str(path))
    back = imageio.read_image(path, CASE)
    np.testing.assert_array_equal(imageio.to_array(back), arr)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), OBLIQUE, atol=1e-5)
    assert back.GetMetaDataKeys() == ()
    out = tmp_path / "out.nii.gz"
    imageio.write_image(back, out)
    assert b"Doe^Janeqx" not in gzip.decompress(out.read_bytes())


def test_like_and_to_array():
    ref = make_image()
    arr = imageio.to_array(ref) * 2
    img = imageio.like(arr, ref)
    assert img.GetSpacing() == ref.GetSpacing() and img.GetOrigin() == ref.GetOrigin()
    np.testing.assert_array_equal(imageio.to_array(img), arr)


def test_write_image_is_deterministic(tmp_path):
    img = make_image()
    imageio.write_image(img, tmp_path / "a.nii.gz")
    time.sleep(1.1)
    imageio.write_image(img, tmp_path / "sub" / "b.nii.gz")  # creates the folder
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "sub" / "b.nii.gz").read_bytes()


# ------------------------------------------------------------------------ DICOM

PATIENT_NAME = "Doe^Janeqx"
PATIENT_ID = "PIDX778899"


def write_dicom_series(volume: sitk.Image, folder, series_uid: str, first_uid_suffix: int = 1):
    """One file per slice with patient tags and positions (SimpleITK/GDCM)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = volume.GetDirection()
    date, now = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    common = [
        ("0010|0010", PATIENT_NAME),
        ("0010|0020", PATIENT_ID),
        ("0008|0020", date),
        ("0008|0030", now),
        ("0008|0060", "MR"),
        ("0008|0008", "DERIVED\\SECONDARY"),
        ("0020|000d", series_uid.rsplit(".", 1)[0] + ".9"),  # study
        ("0020|000e", series_uid),  # series
        # row and column direction cosines = first two columns of the direction matrix
        ("0020|0037", "\\".join(f"{v:.6f}" for v in direction[0::3] + direction[1::3])),
        ("0008|103e", "radstudy test series"),
    ]
    for k in range(volume.GetDepth()):
        sl = volume[:, :, k]
        for tag, value in common:
            sl.SetMetaData(tag, value)
        pos = volume.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{p:.6f}" for p in pos))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{series_uid}.{first_uid_suffix + k}")
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(sl)


def dicom_volume():
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 2000, size=(7, 16, 20)).astype(np.int16)
    vol = sitk.GetImageFromArray(arr)
    vol.SetSpacing((0.75, 0.75, 3.0))
    vol.SetOrigin((-12.0, 30.5, -100.0))
    return vol, arr


def test_dicom_series_round_trip_without_patient_tags(tmp_path):
    vol, arr = dicom_volume()
    folder = tmp_path / "dicom"
    write_dicom_series(vol, folder, "1.2.826.0.1.3680043.2.1125.7.1")
    # the files really do carry the patient tags
    raw = b"".join(p.read_bytes() for p in sorted(folder.iterdir()))
    assert PATIENT_NAME.encode() in raw and PATIENT_ID.encode() in raw

    image = imageio.read_image(folder, CASE)
    assert image.GetDimension() == 3
    assert image.GetSize() == (20, 16, 7)
    np.testing.assert_allclose(image.GetSpacing(), (0.75, 0.75, 3.0), atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), (-12.0, 30.5, -100.0), atol=1e-4)
    np.testing.assert_array_equal(imageio.to_array(image), arr)
    assert image.GetMetaDataKeys() == ()  # stripped
    check_image(image, CASE, folder)

    out = tmp_path / "out" / "img.nii.gz"
    imageio.write_image(image, out)
    data = out.read_bytes()
    assert data[:2] == b"\x1f\x8b"  # gzip
    plain = gzip.decompress(data)
    for secret in (PATIENT_NAME, PATIENT_ID, "Doe", "radstudy test series"):
        assert secret.encode() not in plain and secret.encode() not in data
    back = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)
    np.testing.assert_allclose(back.GetSpacing(), (0.75, 0.75, 3.0), atol=1e-4)
    assert not any(PATIENT_NAME in back.GetMetaData(k) for k in back.GetMetaDataKeys())


def test_folder_with_two_series_is_refused(tmp_path):
    vol, _ = dicom_volume()
    folder = tmp_path / "dicom"
    write_dicom_series(vol, folder, "1.2.826.0.1.3680043.2.1125.7.1")
    other = tmp_path / "other"
    write_dicom_series(vol, other, "1.2.826.0.1.3680043.2.1125.7.2", first_uid_suffix=100)
    for p in other.iterdir():
        p.rename(folder / f"b_{p.name}")
    with pytest.raises(CaseError) as exc:
        imageio.read_image(folder, CASE)
    assert_one_line(exc.value, folder, "folder holds 2 DICOM series")


def test_dicom_case_through_prepare_case_leaks_no_patient_tag(tmp_path):
    """Everything prepare_case writes from a DICOM series (image, mask, QC JSON)
    is free of the patient's name and ID."""
    vol, arr = dicom_volume()
    folder = tmp_path / "dicom"
    write_dicom_series(vol, folder, "1.2.826.0.1.3680043.2.1125.7.3")
    roi = np.zeros(arr.shape, np.uint8)
    roi[2:5, 4:12, 5:15] = 1
    mask = sitk.GetImageFromArray(roi)
    mask.CopyInformation(imageio.read_image(folder, CASE))
    mask_p = tmp_path / "mask.nii.gz"
    sitk.WriteImage(mask, str(mask_p))
    outs = {
        "image": tmp_path / "out" / "prepared.nii.gz",
        "mask": tmp_path / "out" / "mask_R1.nii.gz",
        "qc": tmp_path / "out" / "qc.json",
    }
    qc = pp.prepare_case(
        CASE,
        "T1",
        folder,
        {"R1": mask_p},
        "R1",
        outs["image"],
        {"R1": outs["mask"]},
        outs["qc"],
        {"modality": "MRI", "spacing": [1.5, 1.5, 3.0], "n4": {"enabled": False}},
    )
    assert qc["input_spacing"] == pytest.approx([0.75, 0.75, 3.0])
    assert json.loads(outs["qc"].read_text()) == qc
    for path in outs.values():
        data = path.read_bytes()
        plain = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        for secret in (PATIENT_NAME, PATIENT_ID, "Janeqx", "778899", "radstudy test series"):
            assert secret.encode() not in plain, (path.name, secret)


def test_oblique_dicom_series_keeps_its_direction(tmp_path):
    vol, arr = dicom_volume()
    direction = sitk.VersorTransform((0.0, 0.0, 1.0), 0.4).GetMatrix()  # in-plane rotation
    vol.SetDirection(direction)
    folder = tmp_path / "oblique"
    write_dicom_series(vol, folder, "1.2.826.0.1.3680043.2.1125.7.4")
    image = imageio.read_image(folder, CASE)
    np.testing.assert_allclose(image.GetDirection(), direction, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), vol.GetOrigin(), atol=1e-3)
    np.testing.assert_array_equal(imageio.to_array(image), arr)
