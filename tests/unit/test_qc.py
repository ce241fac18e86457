"""Preflight QC: every bad input excludes the case with one line.

Each test builds small real SimpleITK images on disk (tmp_path) and checks that
the :class:`CaseError` message names the case, the file and the problem.
Reading/writing (formats, DICOM, patient tags) is in test_imageio.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from radstudy import imageio
from radstudy.errors import CaseError
from radstudy.qc import check_image, check_inside, check_mask

CASE = "HB012"
SPACING = (0.8, 0.8, 2.5)
ORIGIN = (-10.0, 5.0, 30.0)


def make_image(shape=(6, 10, 12), spacing=SPACING, origin=ORIGIN, dtype=np.float32, seed=0):
    """A real image of numpy shape (z, y, x) with the given geometry."""
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray((rng.normal(100, 10, shape)).astype(dtype))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def make_mask(image, box=(slice(1, 4), slice(2, 6), slice(3, 8)), value=1):
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[box] = value
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(image)
    return m


def write(img, path):
    sitk.WriteImage(img, str(path))
    return path


def read_back(path):
    """Round-trip through the project's reader, as the pipeline does."""
    return imageio.read_image(path, CASE)


def assert_one_line(err: CaseError, path, *words):
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"case {CASE}: {path}: ")
    assert err.case == CASE and err.file == str(path)
    for w in words:
        assert w in msg, msg


# --------------------------------------------------------------------- good case


def test_good_case_passes_and_returns_binary_mask(tmp_path):
    image = read_back(write(make_image(), tmp_path / "img.nii.gz"))
    mask = read_back(write(make_mask(image, value=1), tmp_path / "mask.nii.gz"))
    check_image(image, CASE, tmp_path / "img.nii.gz")
    out = check_mask(image, mask, CASE, tmp_path / "mask.nii.gz")
    check_inside(image, out, CASE, tmp_path / "mask.nii.gz")
    arr = sitk.GetArrayFromImage(out)
    assert arr.dtype == np.uint8 and set(np.unique(arr)) == {0, 1}
    assert int(arr.sum()) == 3 * 4 * 5
    assert out.GetSpacing() == image.GetSpacing() and out.GetOrigin() == image.GetOrigin()


# ------------------------------------------------------------- mask geometry


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(shape=(6, 10, 11)), ["mask size", "differs from image size"]),
        (dict(spacing=(0.8, 0.8, 3.0)), ["mask spacing", "differs from image spacing"]),
        (dict(origin=(-10.0, 5.0, 40.0)), ["mask origin", "differs from image origin"]),
        (dict(direction=(0, 1, 0, 1, 0, 0, 0, 0, -1)), ["mask direction", "differs"]),
    ],
    ids=["size", "spacing", "origin", "direction"],
)
def test_mask_geometry_mismatch(tmp_path, change, words):
    image = read_back(write(make_image(), tmp_path / "img.nii.gz"))
    kw = {k: v for k, v in change.items() if k != "direction"}
    other = make_image(**kw)
    if "direction" in change:
        other.SetDirection(change["direction"])
    raw = make_mask(other)
    path = tmp_path / "mask_bad.nii.gz"
    mask = read_back(write(raw, path))
    with pytest.raises(CaseError) as exc:
        check_mask(image, mask, CASE, path)
    assert_one_line(exc.value, path, *words)


def test_tiny_geometry_difference_is_tolerated(tmp_path):
    """Header rounding (float32 in NIfTI) must not exclude a case."""
    image = make_image()
    other = make_image(spacing=(0.8 + 1e-6, 0.8, 2.5), origin=(-10.0 + 1e-5, 5.0, 30.0))
    check_mask(image, make_mask(other), CASE, "mask.nii.gz")


def test_mask_of_other_dimension(tmp_path):
    image = make_image()
    mask2d = sitk.GetImageFromArray(np.ones((10, 12), np.uint8))
    with pytest.raises(CaseError) as exc:
        check_mask(image, mask2d, CASE, "m.nii.gz")
    assert_one_line(exc.value, "m.nii.gz", "mask is 2D but image is 3D")


# ---------------------------------------------------------------- mask content


def test_empty_mask(tmp_path):
    image = make_image()
    path = tmp_path / "empty.nii.gz"
    mask = read_back(write(make_mask(image, value=0), path))
    with pytest.raises(CaseError) as exc:
        check_mask(image, mask, CASE, path)
    assert_one_line(exc.value, path, "mask is empty")


def test_mask_covering_whole_image(tmp_path):
    image = make_image()
    path = tmp_path / "full.nii.gz"
    mask = make_mask(image, box=(slice(None),) * 3)
    with pytest.raises(CaseError) as exc:
        check_mask(image, mask, CASE, path)
    assert_one_line(exc.value, path, "mask covers the whole image")


def multilabel(image):
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[1:3, 1:4, 1:4] = 2  # 2*3*3 = 18 voxels
    arr[3:5, 5:9, 6:11] = 5  # 2*4*5 = 40 voxels
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(image)
    return m


def test_multilabel_mask_label_argument_selects_roi(tmp_path):
    image = make_image()
    path = tmp_path / "labels.nii.gz"
    mask = read_back(write(multilabel(image), path))
    two = sitk.GetArrayFromImage(check_mask(image, mask, CASE, path, label=2))
    five = sitk.GetArrayFromImage(check_mask(image, mask, CASE, path, label="5"))
    anyl = sitk.GetArrayFromImage(check_mask(image, mask, CASE, path, label="any"))
    assert (two.sum(), five.sum(), anyl.sum()) == (18, 40, 58)
    assert two[1, 1, 1] == 1 and two[3, 5, 6] == 0
    assert five[3, 5, 6] == 1 and five[1, 1, 1] == 0
    assert set(np.unique(five)) == {0, 1}


def test_multilabel_mask_missing_label(tmp_path):
    image = make_image()
    path = tmp_path / "labels.nii.gz"
    mask = read_back(write(multilabel(image), path))
    with pytest.raises(CaseError) as exc:
        check_mask(image, mask, CASE, path)  # default label 1 is absent
    assert_one_line(exc.value, path, "mask has labels [2, 5] but not 1", "mask_label")


def test_nan_in_float_mask(tmp_path):
    image = make_image()
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.float32)
    arr[2, 2, 2] = 1
    arr[0, 0, 0] = np.nan
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(image)
    path = tmp_path / "nanmask.nii.gz"
    mask = read_back(write(m, path))
    with pytest.raises(CaseError) as exc:
        check_mask(image, mask, CASE, path)
    assert_one_line(exc.value, path, "mask contains NaN voxels")


def test_mask_outside_imaged_region(tmp_path):
    arr = np.zeros((6, 10, 12), np.float32)
    arr[:, :, 6:] = 200.0  # body on the right half, zero padding on the left
    image = sitk.GetImageFromArray(arr)
    mask = make_mask(image, box=(slice(1, 4), slice(2, 6), slice(0, 4)))
    with pytest.raises(CaseError) as exc:
        check_inside(image, mask, CASE, "m.nii.gz")
    assert_one_line(exc.value, "m.nii.gz", "mask lies outside the imaged region")
    inside = make_mask(image, box=(slice(1, 4), slice(2, 6), slice(7, 10)))
    check_inside(image, inside, CASE, "m.nii.gz")


# ---------------------------------------------------------------- image content


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_nan_voxels_in_image(tmp_path, suffix):
    """ITK's NIfTI reader (ITK < 6) turns NaN/inf into 0; read_image must not."""
    img = make_image()
    arr = sitk.GetArrayFromImage(img)
    arr[1, 2, 3] = np.nan
    arr[4, 5, 6] = np.inf
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    path = tmp_path / f"nan{suffix}"
    image = read_back(write(bad, path))
    back = sitk.GetArrayViewFromImage(image)
    assert np.isnan(back[1, 2, 3]) and np.isposinf(back[4, 5, 6])
    np.testing.assert_array_equal(np.isfinite(back), np.isfinite(arr))
    with pytest.raises(CaseError) as exc:
        check_image(image, CASE, path)
    assert_one_line(exc.value, path, "image contains 2 NaN/inf voxels")


def test_float64_nifti_nan_is_kept(tmp_path):
    arr = np.full((4, 5, 6), 7.0, np.float64)
    arr[0, 1, 2] = -np.inf
    path = write(sitk.GetImageFromArray(arr), tmp_path / "d.nii.gz")
    back = sitk.GetArrayFromImage(read_back(path))
    assert back.dtype == np.float64 and np.isneginf(back[0, 1, 2]) and (back[1:] == 7.0).all()


def test_two_dimensional_image(tmp_path):
    path = tmp_path / "slice.nii.gz"
    image = read_back(write(sitk.GetImageFromArray(np.ones((10, 12), np.float32)), path))
    with pytest.raises(CaseError) as exc:
        check_image(image, CASE, path)
    assert_one_line(exc.value, path, "image is 2D, expected a 3D volume")


def test_four_dimensional_image(tmp_path):
    path = tmp_path / "dynamic.nii.gz"
    image = read_back(
        write(sitk.GetImageFromArray(np.ones((3, 4, 5, 6), np.float32), isVector=False), path)
    )
    assert image.GetDimension() == 4
    with pytest.raises(CaseError) as exc:
        check_image(image, CASE, path)
    assert_one_line(exc.value, path, "image is 4D, expected a 3D volume")


def test_single_slice_volume(tmp_path):
    path = tmp_path / "flat.nii.gz"
    image = read_back(write(make_image(shape=(1, 10, 12)), path))
    with pytest.raises(CaseError) as exc:
        check_image(image, CASE, path)
    assert_one_line(exc.value, path, "is not a volume")


def test_vector_image(tmp_path):
    path = tmp_path / "rgb.nii.gz"
    rgb = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    image = read_back(write(rgb, path))
    with pytest.raises(CaseError) as exc:
        check_image(image, CASE, path)
    assert_one_line(exc.value, path, "several components per voxel")


# ---------------------------------------------------------------- unreadable files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(CaseError) as exc:
        imageio.read_image(path, CASE)
    assert_one_line(exc.value, path, "file does not exist")


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"this is not an image\n" * 10)
    with pytest.raises(CaseError) as exc:
        imageio.read_image(path, CASE)
    assert_one_line(exc.value, path, "cannot read image")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd"])
def test_truncated_file(tmp_path, suffix):
    """ITK zero-fills a truncated NIfTI without an error; read_image refuses it."""
    good = write(make_image(shape=(20, 30, 30)), tmp_path / f"good{suffix}")
    data = good.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaseError) as exc:
        imageio.read_image(path, CASE)
    words = ["cannot read image"] if suffix == ".nrrd" else ["file is truncated"]
    assert_one_line(exc.value, path, *words)
    imageio.read_image(good, CASE)  # the whole file is fine


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "notes.txt").write_text("no dicom here\n")
    with pytest.raises(CaseError) as exc:
        imageio.read_image(folder, CASE)
    assert_one_line(exc.value, folder, "folder holds no DICOM image series")
