"""SLIC + fuzzy c-means segmentation, reader consensus, nnU-Net backend."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from radstudy.agreement import dice
from radstudy.errors import CaseError
from radstudy.preprocess import resample, resample_mask_to
from radstudy.segment import (
    consensus,
    consensus_case,
    default_region,
    pick_tumor_cluster,
    segment_case,
    slic_fcm,
)
from radstudy.synth import generate_cohort


def liver_phantom(seed: int = 0, n: int = 64, tumor: float = 380.0, liver: float = 140.0):
    """MRI-like 1 mm volume: fat background, liver ellipsoid, lobulated textured tumor,
    Rician-like noise and a smooth multiplicative bias. Returns image, liver, tumor."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n].astype(float)
    c = (n - 1) / 2
    liver_m = ((z - c) / 26) ** 2 + ((y - c) / 28) ** 2 + ((x - c) / 24) ** 2 <= 1
    # lobulated tumor: radius modulated by low-order harmonics of the direction
    tz, ty, tx = c + 3, c - 4, c + 5
    dz, dy, dx = z - tz, y - ty, x - tx
    r = np.sqrt(dz**2 + dy**2 + dx**2) + 1e-9
    radius = 11 * (1 + 0.15 * (dx / r) * (dy / r) * 3 + 0.1 * np.cos(3 * np.arctan2(dy, dx)))
    tumor_m = (r <= radius) & liver_m
    img = np.full((n, n, n), 330.0)  # fat
    img[liver_m] = liver
    texture = ndimage.gaussian_filter(rng.normal(size=img.shape), 1.5)
    img[tumor_m] = tumor + 40 * texture[tumor_m] / texture.std()
    bias = 1 + 0.2 * (x - c) / n + 0.1 * (z - c) / n
    noisy = np.hypot(img * bias + rng.normal(0, 18, img.shape), rng.normal(0, 18, img.shape))
    return noisy.astype(np.float32), liver_m.astype(np.uint8), tumor_m.astype(np.uint8)


def test_slic_fcm_dice_on_liver_phantom():
    img, liver, tumor = liver_phantom()
    mask, member = slic_fcm(img, (1.0, 1.0, 1.0), liver, {}, seed=0, sequence="T2")
    assert mask.dtype == np.uint8 and member.dtype == np.float32
    assert dice(mask, tumor) >= 0.85
    # the soft output agrees with the hard mask and is a membership
    assert 0 <= member.min() and member.max() <= 1
    assert member[mask > 0].mean() > 0.7 and member[(liver > 0) & (tumor == 0)].mean() < 0.3
    # one connected component, no holes
    assert ndimage.label(mask)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask.astype(bool))
    # same seed, same bytes
    again, _ = slic_fcm(img, (1.0, 1.0, 1.0), liver, {}, seed=0, sequence="T2")
    assert np.array_equal(again, mask)


def test_direction_selects_dark_or_bright_tumor():
    # a dark tumor on a T1-like image: "hypo" finds it, "hyper" cannot
    img, liver, tumor = liver_phantom(seed=1, tumor=250.0, liver=420.0)
    mask, _ = slic_fcm(img, (1, 1, 1), liver, {}, seed=0, sequence="T1")
    assert dice(mask, tumor) >= 0.85
    with pytest.raises(ValueError, match="brighter"):
        slic_fcm(img, (1, 1, 1), liver, {"direction": "hyper"}, seed=0)
    centers = np.array([[0.2, 0.2], [0.5, 0.5], [0.9, 0.9]])
    share = np.array([0.1, 0.7, 0.2])
    assert pick_tumor_cluster(centers, share, 0.5, "hyper", 0.6) == 2
    assert pick_tumor_cluster(centers, share, 0.5, "hypo", 0.6) == 0
    assert pick_tumor_cluster(centers, share, 0.5, "auto", 0.6) == 2  # |0.4| > |0.3|
    assert pick_tumor_cluster(centers, share, 0.5, "auto", 0.15) == 0  # size limit


def test_default_region_central_box_and_whole():
    box = default_region((10, 20, 40), {"center_fraction": 0.5})
    assert box.sum() == 5 * 10 * 20
    assert box[5, 10, 20] and not box[0, 0, 0]
    assert default_region((4, 4, 4), {"no_region": "whole"}).all()


def _write(arr, path, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((-3.0, 5.0, 7.0))
    sitk.WriteImage(img, str(path))
    return path


def test_segment_case_files_geometry_and_case_error(tmp_path):
    img, liver, tumor = liver_phantom(seed=2)
    ip = _write(img, tmp_path / "img.nii.gz")
    lp = _write(liver, tmp_path / "liver.nii.gz")
    info = segment_case("P1", ip, lp, tmp_path / "m.nii.gz", tmp_path / "u.nii.gz", {}, 0, "T2")
    m = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    u = sitk.ReadImage(str(tmp_path / "u.nii.gz"))
    assert m.GetOrigin() == (-3.0, 5.0, 7.0) and u.GetPixelID() == sitk.sitkFloat32
    assert info["voxels"] == int(sitk.GetArrayFromImage(m).sum()) > 0
    assert info["volume_ml"] == pytest.approx(info["voxels"] / 1000)
    assert dice(sitk.GetArrayFromImage(m), tumor) >= 0.85
    # no organ mask: the central box still contains this tumor
    segment_case("P1", ip, None, tmp_path / "m2.nii.gz", tmp_path / "u2.nii.gz", {}, 0, "T2")
    assert dice(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m2.nii.gz"))), tumor) > 0.8
    # a flat image cannot be segmented: the case is excluded with a clear message
    flat = _write(np.full((16, 16, 16), 7.0, np.float32), tmp_path / "flat.nii.gz")
    with pytest.raises(CaseError, match="case P2: .*flat.nii.gz: .*no intensity contrast"):
        segment_case("P2", flat, None, tmp_path / "m3.nii.gz", tmp_path / "u3.nii.gz", {}, 0)
    empty = _write(np.zeros_like(liver), tmp_path / "empty.nii.gz")
    with pytest.raises(CaseError, match="organ mask is empty"):
        segment_case("P3", ip, empty, tmp_path / "m4.nii.gz", tmp_path / "u4.nii.gz", {}, 0)


def test_consensus_majority(tmp_path):
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 1], bool)
    c = np.array([0, 1, 1, 0, 1], bool)
    assert consensus([a, b, c]).tolist() == [1, 1, 1, 0, 1]
    assert consensus([a, b, c], min_votes=3).tolist() == [0, 0, 0, 0, 1]
    assert consensus([a, b, c, c]).tolist() == [0, 1, 1, 0, 1]  # 3 of 4
    with pytest.raises(ValueError):
        consensus([a, b], min_votes=3)
    paths = [_write(m.reshape(1, 1, 5).astype(np.uint8), tmp_path / f"r{i}.nii.gz") for i, m in
             enumerate((a, b, c))]  # fmt: skip
    consensus_case(paths, tmp_path / "cons.nii.gz")
    out = sitk.ReadImage(str(tmp_path / "cons.nii.gz"))
    assert sitk.GetArrayFromImage(out).ravel().tolist() == [1, 1, 1, 0, 1]
    assert out.GetOrigin() == (-3.0, 5.0, 7.0)


def test_slic_fcm_reaches_dice_085_on_synthetic_cohort(tmp_path):
    spec = {
        "sequences": ["T2"],
        "readers": ["R1"],
        "seed": 3,
        "centers": [
            {
                "name": "C",
                "n": 4,
                "role": "train",
                "spacing": [1.2, 1.2, 3.0],
                "field_strength": 3.0,
                "gain": 1.0,
                "offset": 0.0,
                "noise": 0.06,
                "bias": 0.2,
            }
        ],
    }
    sheet = pd.read_csv(generate_cohort(tmp_path, spec), sep="\t")
    scores = []
    for _, r in sheet.iterrows():
        img = resample(sitk.ReadImage(str(tmp_path / r["image_T2"])), [1, 1, 1])
        organ = resample_mask_to(sitk.ReadImage(str(tmp_path / r["organ_mask"])), img)
        truth = resample_mask_to(
            sitk.ReadImage(str(tmp_path / "truth" / r["case_id"] / "mask_true.nii.gz")), img
        )
        mask, _ = slic_fcm(
            sitk.GetArrayFromImage(img),
            img.GetSpacing()[::-1],
            sitk.GetArrayFromImage(organ),
            {},
            seed=0,
            sequence="T2",
        )
        scores.append(dice(mask, sitk.GetArrayFromImage(truth)))
    assert np.mean(scores) >= 0.85, scores
