"""Preprocessing on real SimpleITK images: resampling, N4, HU window, z-score, Nyul,
and per-reader exclusion markers in ``prepare_case``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from radstudy import preprocess as pp
from radstudy.casestep import marker_reason
from radstudy.errors import CaseError


def to_image(arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def save(img, path):
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def cov(values):
    return float(values.std() / values.mean())


# ------------------------------------------------------------------ resampling


def test_resample_to_1mm_spacing_size_and_centre():
    rng = np.random.default_rng(0)
    img = to_image(
        rng.normal(50, 5, (10, 20, 30)).astype(np.float32),
        spacing=(0.5, 0.75, 2.5),
        origin=(-7.0, 3.0, 11.0),
    )
    out = pp.resample(img, (1.0, 1.0, 1.0), "linear")
    assert out.GetSpacing() == (1.0, 1.0, 1.0)
    assert out.GetSize() == (15, 15, 25)  # 30*0.5, 20*0.75, 10*2.5
    assert out.GetPixelID() == sitk.sitkFloat32
    assert out.GetDirection() == img.GetDirection()

    # the physical centre of the field of view does not move
    def centre(im):
        return np.asarray(
            im.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in im.GetSize()])
        )

    np.testing.assert_allclose(centre(out), centre(img), atol=1e-6)
    # a constant image stays constant (no edge artefacts from the default value)
    flat = pp.resample(to_image(np.full((10, 20, 30), 42, np.int16), (0.5, 0.75, 2.5)), (1, 1, 1))
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(flat), 42.0, atol=1e-3)


def test_resample_keeps_intensity_of_smooth_ramp():
    z, y, x = np.meshgrid(np.arange(8), np.arange(16), np.arange(16), indexing="ij")
    ramp = (x * 0.5 * 3.0).astype(np.float32)  # 3 units per mm along x
    img = to_image(ramp, spacing=(0.5, 0.5, 2.0))
    out = pp.resample(img, (1.0, 1.0, 1.0), "linear")
    arr = sitk.GetArrayFromImage(out)
    assert arr.shape == (16, 8, 8)
    inner = arr[2:-2, 2:-2, 1:-1]
    np.testing.assert_allclose(np.diff(inner, axis=2), 3.0, atol=1e-4)


def test_resample_mask_nearest_keeps_binary():
    img = to_image(np.zeros((10, 20, 30), np.float32), spacing=(0.5, 0.75, 2.5))
    m = np.zeros((10, 20, 30), np.uint8)
    m[3:7, 5:15, 10:20] = 1
    mask = to_image(m, spacing=(0.5, 0.75, 2.5))
    out = pp.resample(img, (1, 1, 1), "bspline")
    rm = sitk.GetArrayFromImage(pp.resample_mask_to(mask, out))
    assert rm.dtype == np.uint8 and set(np.unique(rm)) == {0, 1}
    # physical volume is kept to within one voxel layer
    assert abs(rm.sum() * 1.0 - m.sum() * 0.5 * 0.75 * 2.5) / (m.sum() * 0.9375) < 0.25


def test_target_spacing_median():
    img = to_image(np.zeros((2, 2, 2), np.float32))
    assert pp.target_spacing({"spacing": [2, 2, 3]}, img) == (2.0, 2.0, 3.0)
    assert pp.target_spacing({"spacing": "median", "median_spacing": [0.8, 0.8, 4]}, img) == (
        0.8,
        0.8,
        4.0,
    )
    with pytest.raises(ValueError):
        pp.target_spacing({"spacing": "median"}, img)


def test_median_spacing_of_training_images(tmp_path):
    paths = [
        save(to_image(np.zeros((3, 4, 5), np.float32), spacing=sp), tmp_path / f"i{k}.nii.gz")
        for k, sp in enumerate([(1.0, 1.0, 3.0), (0.5, 0.5, 5.0), (0.8, 0.7, 4.0)])
    ]
    np.testing.assert_allclose(pp.median_spacing(paths), [0.8, 0.7, 4.0], rtol=1e-6)


# ------------------------------------------------------------ prepare_case: MRI N4

SHAPE = (40, 48, 48)  # z, y, x at 1 mm


def phantom_with_bias(seed=0):
    """A body (uniform tissue 100 with noise) in air, times a linear bias field."""
    rng = np.random.default_rng(seed)
    arr = np.zeros(SHAPE, np.float32)
    body = (slice(4, 36), slice(6, 42), slice(6, 42))
    arr[body] = 100.0
    arr += rng.normal(0, 2.0, SHAPE).astype(np.float32)
    x = np.arange(SHAPE[2], dtype=np.float32)
    bias = 0.6 + 0.8 * x / (SHAPE[2] - 1)  # 0.6 .. 1.4 across the field of view
    arr = np.clip(arr * bias[None, None, :], 0, None)
    region = np.zeros(SHAPE, bool)
    region[10:30, 12:36, 10:38] = True  # uniform region well inside the body
    roi = np.zeros(SHAPE, np.uint8)
    roi[14:26, 16:32, 16:32] = 1
    return arr, region, roi


def test_prepare_case_n4_reduces_bias(tmp_path):
    arr, region, roi = phantom_with_bias()
    img_p = save(to_image(arr), tmp_path / "img.nii.gz")
    mask_p = save(to_image(roi), tmp_path / "mask.nii.gz")
    out_img, out_mask, qc_json = tmp_path / "o.nii.gz", tmp_path / "om.nii.gz", tmp_path / "q.json"
    qc = pp.prepare_case(
        "C1",
        "T1",
        img_p,
        {"r1": mask_p},
        "r1",
        out_img,
        {"r1": out_mask},
        qc_json,
        {"modality": "MRI", "interpolator": "linear"},
    )
    before = cov(arr[region])
    after = cov(read(out_img)[region])
    assert before > 0.1
    assert after < 0.3 * before, (before, after)  # measured: 0.139 -> 0.020 (noise floor)
    assert qc["bias_field"]["max"] / qc["bias_field"]["min"] > 1.5
    assert json.loads(qc_json.read_text())["mask_voxels"] == {"r1": int(roi.sum())}
    np.testing.assert_array_equal(read(out_mask), roi)
    assert marker_reason(out_mask) is None


def test_prepare_case_without_n4_keeps_bias(tmp_path):
    arr, region, roi = phantom_with_bias()
    img_p = save(to_image(arr), tmp_path / "img.nii.gz")
    mask_p = save(to_image(roi), tmp_path / "mask.nii.gz")
    out_img = tmp_path / "o.nii.gz"
    qc = pp.prepare_case(
        "C1",
        "T1",
        img_p,
        {"r1": mask_p},
        "r1",
        out_img,
        {"r1": tmp_path / "m.nii.gz"},
        tmp_path / "q.json",
        {"interpolator": "linear", "n4": {"enabled": False}},
    )
    assert "bias_field" not in qc
    np.testing.assert_allclose(read(out_img), arr, atol=1e-3)


# -------------------------------------------------------------- prepare_case: CT


def test_prepare_case_ct_hu_window(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.uniform(-1000, 1500, (12, 24, 24)).astype(np.int16)
    roi = np.zeros(arr.shape, np.uint8)
    roi[3:9, 6:18, 6:18] = 1
    img_p = save(to_image(arr, spacing=(0.7, 0.7, 2.0)), tmp_path / "ct.nii.gz")
    mask_p = save(to_image(roi, spacing=(0.7, 0.7, 2.0)), tmp_path / "m.nii.gz")
    out_img = tmp_path / "o.nii.gz"
    qc = pp.prepare_case(
        "CT1",
        "CT",
        img_p,
        {"r1": mask_p},
        "r1",
        out_img,
        {"r1": tmp_path / "om.nii.gz"},
        tmp_path / "q.json",
        {"modality": "CT"},
    )
    out = read(out_img)
    assert out.min() == 0.0 and out.max() == 350.0
    assert ((out > 0) & (out < 350)).any()
    assert "bias_field" not in qc
    assert qc["output_spacing"] == [1.0, 1.0, 1.0]
    assert qc["percentiles_after"]["1"] == 0.0 and qc["percentiles_after"]["99"] == 350.0


def test_hu_window_custom():
    img = to_image(np.array([[[-2000, -50, 0, 40, 80, 3000]]], np.int16))
    out = sitk.GetArrayFromImage(pp.hu_window(img, -50, 80))
    np.testing.assert_array_equal(out.ravel(), [-50, -50, 0, 40, 80, 80])


# ------------------------------------------------ prepare_case: per-reader masks


def two_reader_case(tmp_path, bad_mask):
    rng = np.random.default_rng(2)
    arr = rng.normal(100, 10, (12, 20, 20)).astype(np.float32)
    roi = np.zeros(arr.shape, np.uint8)
    roi[3:9, 5:15, 5:15] = 1
    img_p = save(to_image(arr), tmp_path / "img.nii.gz")
    good = save(to_image(roi), tmp_path / "m_ref.nii.gz")
    bad = save(bad_mask(arr, roi), tmp_path / "m_bad.nii.gz")
    return img_p, good, bad, roi


def empty_mask(arr, roi):
    return to_image(np.zeros_like(roi))


def shifted_mask(arr, roi):
    return to_image(roi, origin=(0.0, 0.0, 25.0))


@pytest.mark.parametrize(
    "bad_mask, problem",
    [(empty_mask, "mask is empty"), (shifted_mask, "differs from image origin")],
    ids=["empty", "origin"],
)
def test_bad_non_reference_mask_excludes_that_reader_only(tmp_path, bad_mask, problem):
    img_p, good, bad, roi = two_reader_case(tmp_path, bad_mask)
    outs = {r: tmp_path / "out" / f"mask_{r}.nii.gz" for r in ("ref", "second", "third")}
    out_img, qc_json = tmp_path / "out" / "img.nii.gz", tmp_path / "out" / "qc.json"
    qc = pp.prepare_case(
        "C7",
        "T2",
        img_p,
        {"ref": good, "second": bad, "third": None},
        "ref",
        out_img,
        outs,
        qc_json,
        {"n4": {"enabled": False}, "interpolator": "linear"},
    )
    reason = marker_reason(outs["second"])
    assert reason is not None
    assert reason.startswith(f"case C7: {bad}: ") and problem in reason
    assert "no mask given" in marker_reason(outs["third"])
    assert marker_reason(outs["ref"]) is None
    np.testing.assert_array_equal(read(outs["ref"]), roi)
    assert marker_reason(out_img) is None
    assert read(out_img).shape == roi.shape
    saved = json.loads(qc_json.read_text())
    assert saved["mask_voxels"] == {"ref": int(roi.sum())}
    assert any(problem in w for w in saved["warnings"]) and qc["warnings"] == saved["warnings"]


def test_bad_reference_mask_excludes_case(tmp_path):
    img_p, good, bad, _ = two_reader_case(tmp_path, empty_mask)
    out_img = tmp_path / "out.nii.gz"
    with pytest.raises(CaseError) as exc:
        pp.prepare_case(
            "C8",
            "T2",
            img_p,
            {"ref": bad, "second": good},
            "ref",
            out_img,
            {"ref": tmp_path / "a.nii.gz", "second": tmp_path / "b.nii.gz"},
            tmp_path / "q.json",
            {"n4": {"enabled": False}},
        )
    assert str(exc.value) == f"case C8: {bad}: mask is empty (no labelled voxel)"
    assert not out_img.exists()


def test_roi_vanishing_after_resampling_is_reported(tmp_path):
    arr = np.random.default_rng(4).normal(100, 10, (6, 40, 40)).astype(np.float32)
    ref = np.zeros(arr.shape, np.uint8)
    ref[1:5, 10:30, 10:30] = 1
    tiny = np.zeros(arr.shape, np.uint8)
    tiny[3, 20, 21] = 1  # one 0.25 mm voxel: lost on a 2 mm grid
    sp = (0.25, 0.25, 2.0)
    img_p = save(to_image(arr, sp), tmp_path / "img.nii.gz")
    ref_p = save(to_image(ref, sp), tmp_path / "ref.nii.gz")
    tiny_p = save(to_image(tiny, sp), tmp_path / "tiny.nii.gz")
    outs = {"ref": tmp_path / "a.nii.gz", "tiny": tmp_path / "b.nii.gz"}
    pp.prepare_case(
        "C9",
        "T2",
        img_p,
        {"ref": ref_p, "tiny": tiny_p},
        "ref",
        tmp_path / "o.nii.gz",
        outs,
        tmp_path / "q.json",
        {"n4": {"enabled": False}, "spacing": [2.0, 2.0, 2.0]},
    )
    assert marker_reason(outs["ref"]) is None
    assert "ROI vanished after resampling" in marker_reason(outs["tiny"])


# ---------------------------------------------------------------- normalisation


def test_zscore_roi_mean_zero_sd_scale(tmp_path):
    rng = np.random.default_rng(5)
    arr = rng.gamma(4.0, 50.0, (10, 20, 20)).astype(np.float32) + 300
    roi = np.zeros(arr.shape, np.uint8)
    roi[2:8, 4:16, 4:16] = 1
    img_p = save(to_image(arr, spacing=(1, 1, 2)), tmp_path / "i.nii.gz")
    mask_p = save(to_image(roi, spacing=(1, 1, 2)), tmp_path / "m.nii.gz")
    out = tmp_path / "n.nii.gz"
    stats = pp.normalize_case("Z1", img_p, mask_p, out, {"normalization": "zscore", "scale": 100})
    norm = read(out)
    assert norm.dtype == np.float32
    assert abs(norm[roi == 1].mean()) < 1e-3
    assert norm[roi == 1].std() == pytest.approx(100.0, rel=1e-4)
    assert stats["method"] == "zscore" and abs(stats["roi_mean"]) < 1e-6
    assert stats["roi_sd"] == pytest.approx(100.0, rel=1e-6)
    # an affine map of the input: same result (gain/offset invariance)
    img2 = save(to_image(arr * 3.0 - 50, spacing=(1, 1, 2)), tmp_path / "i2.nii.gz")
    pp.normalize_case("Z1", img2, mask_p, tmp_path / "n2.nii.gz", {"scale": 100})
    np.testing.assert_allclose(read(tmp_path / "n2.nii.gz"), norm, atol=0.05)
    assert sitk.ReadImage(str(out)).GetSpacing() == (1.0, 1.0, 2.0)
    # the QC record: ROI quantiles before (raw) and after (z-scored) normalisation
    pp.normalize_case("Z1", img_p, mask_p, out, {"scale": 100}, out_qc_json=tmp_path / "q.json")
    qc = json.loads((tmp_path / "q.json").read_text())
    vals = arr[roi == 1].astype(np.float64)
    assert qc["case_id"] == "Z1" and qc["quantiles"][6] == 50
    assert qc["roi_before"][6] == pytest.approx(np.median(vals), rel=1e-6)
    z = (vals - vals.mean()) / vals.std() * 100
    assert qc["roi_after"][6] == pytest.approx(np.median(z), abs=0.05)


def test_zscore_constant_roi_is_case_error(tmp_path):
    arr = np.ones((4, 6, 6), np.float32)
    roi = np.zeros(arr.shape, np.uint8)
    roi[1:3, 1:4, 1:4] = 1
    img_p = save(to_image(arr), tmp_path / "i.nii.gz")
    mask_p = save(to_image(roi), tmp_path / "m.nii.gz")
    with pytest.raises(CaseError, match=r"^case Z2: .*i\.nii\.gz: ROI intensities are constant"):
        pp.normalize_case("Z2", img_p, mask_p, tmp_path / "n.nii.gz", {})


def nyul_image(rng, gain, offset):
    """Tissue with a skewed histogram (background 0) and an organ mask."""
    arr = np.zeros((12, 24, 24), np.float32)
    organ = np.zeros(arr.shape, np.uint8)
    organ[2:10, 4:20, 4:20] = 1
    n = int(organ.sum())
    tissue = np.concatenate([rng.normal(60, 8, n // 2), rng.gamma(3.0, 15.0, n - n // 2) + 90])
    arr[organ == 1] = rng.permutation(tissue)
    return (arr * gain + offset).astype(np.float32), organ


def test_nyul_fit_and_apply(tmp_path):
    rng = np.random.default_rng(6)
    imgs, masks = [], []
    for k, (gain, offset) in enumerate([(1.0, 0.0), (1.6, 40.0), (0.7, 10.0)]):
        arr, organ = nyul_image(rng, gain, offset)
        imgs.append(save(to_image(arr), tmp_path / f"train{k}.nii.gz"))
        masks.append(save(to_image(organ), tmp_path / f"organ{k}.nii.gz"))
    model_p = tmp_path / "nyul.json"
    model = pp.fit_nyul(imgs, masks, model_p, {})
    assert json.loads(model_p.read_text()) == model
    assert model["n_images"] == 3
    std = np.asarray(model["standard"])
    assert std[0] == pytest.approx(0.0) and std[-1] == pytest.approx(100.0)
    assert (np.diff(std) > 0).all()

    # a new scan with quite another gain and offset
    arr, organ = nyul_image(rng, 2.5, 300.0)
    new_p = save(to_image(arr), tmp_path / "new.nii.gz")
    organ_p = save(to_image(organ), tmp_path / "new_organ.nii.gz")
    out = tmp_path / "new_norm.nii.gz"
    stats = pp.normalize_case(
        "N1", new_p, organ_p, out, {"normalization": "nyul"}, nyul_json=model_p
    )
    assert stats["method"] == "nyul"
    vals = read(out)[organ == 1]
    lm = np.percentile(vals, model["percentiles"])
    np.testing.assert_allclose(lm, std, atol=0.5)
    # raw landmarks were far from the standard scale
    assert np.abs(np.percentile(arr[organ == 1], model["percentiles"]) - std).min() > 100


def test_nyul_skips_markers_and_needs_one_image(tmp_path):
    from radstudy.casestep import write_marker

    rng = np.random.default_rng(7)
    arr, organ = nyul_image(rng, 1.0, 0.0)
    img = save(to_image(arr), tmp_path / "i.nii.gz")
    org = save(to_image(organ), tmp_path / "o.nii.gz")
    write_marker(tmp_path / "bad.nii.gz", "case X: f: mask is empty")
    model = pp.fit_nyul(
        [img, tmp_path / "bad.nii.gz", img],
        [org, org, tmp_path / "bad.nii.gz"],
        tmp_path / "n.json",
        {},
    )
    assert model["n_images"] == 1
    with pytest.raises(ValueError, match="no usable training image"):
        pp.fit_nyul([tmp_path / "bad.nii.gz"], [None], tmp_path / "n2.json", {})
    with pytest.raises(ValueError, match="needs the fitted landmarks"):
        pp.normalize_case("X", img, org, tmp_path / "x.nii.gz", {"normalization": "nyul"})


def test_apply_nyul_is_monotone_and_extrapolates():
    model = {"percentiles": [1, 50, 99], "standard": [0.0, 40.0, 100.0]}
    region = np.linspace(10, 20, 1001)
    arr = np.array([0.0, 10.1, 15.0, 19.9, 30.0])
    out = pp.apply_nyul(arr, region, model)
    assert (np.diff(out) > 0).all()
    assert out[2] == pytest.approx(40.0, abs=1e-6)
    assert out[0] < 0 and out[-1] > 100


def test_nyul_training_images_land_on_the_standard_scale(tmp_path):
    """Each training image (same tissue, other gain/offset) is mapped onto the standard
    landmarks; a refit on the same files gives the same bytes."""
    rng = np.random.default_rng(8)
    arr0, organ = nyul_image(rng, 1.0, 0.0)
    imgs = []
    for k, (gain, offset) in enumerate([(1.0, 0.0), (2.0, 100.0), (0.5, -20.0)]):
        imgs.append(save(to_image(arr0 * gain + offset), tmp_path / f"t{k}.nii.gz"))
    org = save(to_image(organ), tmp_path / "organ.nii.gz")
    model = pp.fit_nyul(imgs, [org] * 3, tmp_path / "n.json", {"nyul_scale": [1, 100]})
    assert model["region"] == "mask"
    for k, img in enumerate(imgs):
        out = tmp_path / f"norm{k}.nii.gz"
        pp.normalize_case("T", img, org, out, {"normalization": "nyul"}, tmp_path / "n.json")
        lm = np.percentile(read(out)[organ == 1], model["percentiles"])
        np.testing.assert_allclose(lm, model["standard"], atol=0.05)
    first = (tmp_path / "n.json").read_bytes()
    pp.fit_nyul(imgs, [org] * 3, tmp_path / "n.json", {"nyul_scale": [1, 100]})
    assert (tmp_path / "n.json").read_bytes() == first
    assert model["standard"][0] == pytest.approx(1.0) and model["standard"][-1] == 100.0


def body_image(rng, gain, offset):
    """Air 0 around a body with two tissues (Otsu separates air from body)."""
    arr = np.zeros((12, 24, 24), np.float64)
    body = np.zeros(arr.shape, bool)
    body[1:11, 3:21, 3:21] = True
    n = int(body.sum())
    arr[body] = rng.permutation(
        np.concatenate([rng.normal(80, 6, n // 2), rng.normal(140, 9, n - n // 2)])
    )
    roi = np.zeros(arr.shape, np.uint8)
    roi[5:7, 10:13, 10:13] = 1  # a small tumour: not the fitting region
    return (arr * gain + offset).astype(np.float32), body, roi


def test_nyul_on_foreground_without_masks(tmp_path):
    """No region masks: landmarks come from the Otsu foreground, at fit and at apply."""
    rng = np.random.default_rng(9)
    imgs = []
    for k, (gain, offset) in enumerate([(1.0, 0.0), (1.5, 30.0)]):
        arr, body, roi = body_image(rng, gain, offset)
        imgs.append(save(to_image(arr), tmp_path / f"t{k}.nii.gz"))
    model = pp.fit_nyul(imgs, None, tmp_path / "n.json", {})
    assert model["region"] == "foreground" and model["n_images"] == 2
    arr, body, roi = body_image(rng, 3.0, 500.0)  # a test scan: other gain and offset
    np.testing.assert_array_equal(pp.foreground(arr), body)
    img = save(to_image(arr), tmp_path / "new.nii.gz")
    roi_p = save(to_image(roi), tmp_path / "roi.nii.gz")
    out = tmp_path / "norm.nii.gz"
    pp.normalize_case("F1", img, roi_p, out, {"normalization": "nyul"}, tmp_path / "n.json")
    lm = np.percentile(read(out)[body], model["percentiles"])
    np.testing.assert_allclose(lm, model["standard"], atol=1.0)


def test_nyul_region_mask_is_used_at_apply(tmp_path):
    rng = np.random.default_rng(10)
    arr, organ = nyul_image(rng, 1.0, 0.0)
    img = save(to_image(arr), tmp_path / "i.nii.gz")
    org = save(to_image(organ), tmp_path / "o.nii.gz")
    pp.fit_nyul([img], [org], tmp_path / "n.json", {})
    roi = np.zeros(arr.shape, np.uint8)
    roi[4:6, 8:12, 8:12] = 1
    roi_p = save(to_image(roi), tmp_path / "roi.nii.gz")
    cfg = {"normalization": "nyul"}
    with_region = pp.normalize_case(
        "R", img, roi_p, tmp_path / "a.nii.gz", cfg, tmp_path / "n.json", org
    )
    only_roi = pp.normalize_case("R", img, roi_p, tmp_path / "b.nii.gz", cfg, tmp_path / "n.json")
    lm = np.percentile(read(tmp_path / "a.nii.gz")[organ == 1], [1, 50, 99])
    np.testing.assert_allclose(lm[[0, 2]], [0.0, 100.0], atol=0.05)
    # landmarks from the small ROI alone give another map
    assert abs(with_region["roi_mean"] - only_roi["roi_mean"]) > 1.0


def test_zscore_inside_region_mask(tmp_path):
    rng = np.random.default_rng(11)
    arr = rng.normal(200, 30, (8, 12, 12)).astype(np.float32)
    roi = np.zeros(arr.shape, np.uint8)
    roi[3:5, 4:8, 4:8] = 1
    region = np.zeros(arr.shape, np.uint8)
    region[1:7, 2:10, 2:10] = 1
    paths = [
        save(to_image(a), tmp_path / f"{n}.nii.gz")
        for n, a in [("i", arr), ("r", roi), ("g", region)]
    ]
    pp.normalize_case("Z", paths[0], paths[1], tmp_path / "o.nii.gz", {"scale": 1}, None, paths[2])
    out = read(tmp_path / "o.nii.gz")
    assert out[region == 1].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[region == 1].std() == pytest.approx(1.0, rel=1e-4)


def test_normalize_none_and_bad_method(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    roi = np.zeros(arr.shape, np.uint8)
    roi[1:3, 1:3, 1:3] = 1
    img, m = save(to_image(arr), tmp_path / "i.nii.gz"), save(to_image(roi), tmp_path / "m.nii.gz")
    pp.normalize_case("N", img, m, tmp_path / "o.nii.gz", {"normalization": "none"})
    np.testing.assert_array_equal(read(tmp_path / "o.nii.gz"), arr)
    with pytest.raises(ValueError, match="zscore, nyul or none"):
        pp.normalize_case("N", img, m, tmp_path / "o.nii.gz", {"normalization": "minmax"})
    with pytest.raises(ValueError, match="nyul_percentiles"):
        pp.fit_nyul([img], [m], tmp_path / "n.json", {"nyul_percentiles": [50, 10, 90]})


def test_prepare_case_qc_record_and_median_spacing(tmp_path):
    """The QC JSON records the geometry before/after, percentiles and mask counts;
    spacing 'median' takes the training median given by the workflow; B-spline default."""
    rng = np.random.default_rng(12)
    arr = (rng.normal(500, 20, (10, 30, 20)) + np.arange(20) * 10).astype(np.float32)
    roi = np.zeros(arr.shape, np.uint8)
    roi[3:7, 10:20, 5:15] = 1
    sp, origin = (0.8, 0.6, 3.0), (-5.0, 2.0, 7.0)
    img_p = save(to_image(arr, sp, origin), tmp_path / "i.nii.gz")
    m_p = save(to_image(roi, sp, origin), tmp_path / "m.nii.gz")
    cfg = {"modality": "CT", "hu_window": [-1000, 3000], "spacing": "median"}
    cfg["median_spacing"] = [1.6, 1.2, 3.0]
    out = tmp_path / "sub" / "o.nii.gz"
    qc = pp.prepare_case(
        "Q1",
        "CT",
        img_p,
        {"R1": m_p},
        "R1",
        out,
        {"R1": tmp_path / "m1.nii.gz"},
        tmp_path / "sub" / "qc.json",
        cfg,
    )
    saved = json.loads((tmp_path / "sub" / "qc.json").read_text())
    assert saved == qc
    assert qc["input_spacing"] == pytest.approx(list(sp)) and qc["input_size"] == [20, 30, 10]
    assert qc["input_origin"] == pytest.approx(list(origin))
    assert qc["output_spacing"] == pytest.approx([1.6, 1.2, 3.0])
    assert qc["output_size"] == [10, 15, 10]
    assert qc["modality"] == "CT" and qc["warnings"] == [] and "bias_field" not in qc
    assert qc["percentiles_before"]["50"] == pytest.approx(np.percentile(arr, 50), rel=1e-6)
    after = read(out)
    assert qc["percentiles_after"]["50"] == pytest.approx(np.percentile(after, 50), rel=1e-6)
    # physical ROI volume kept up to nearest-neighbour rounding at half the resolution
    # (10 voxels -> 5 or 6 along x and y: measured 120 voxels = +20 %)
    assert qc["mask_voxels"]["R1"] * 1.6 * 1.2 * 3.0 == pytest.approx(
        roi.sum() * 0.8 * 0.6 * 3, rel=0.25
    )
    # B-spline (3rd order) differs from linear on the ramp + noise
    lin = tmp_path / "lin.nii.gz"
    pp.prepare_case(
        "Q1",
        "CT",
        img_p,
        {"R1": m_p},
        "R1",
        lin,
        {"R1": tmp_path / "m2.nii.gz"},
        tmp_path / "q2.json",
        {**cfg, "interpolator": "linear"},
    )
    assert np.abs(read(lin) - after).max() > 1.0


def test_bad_config_is_config_error():
    from radstudy.errors import ConfigError

    with pytest.raises(ConfigError, match="interpolator must be one of"):
        pp.merged({"interpolator": "cubic"})
    with pytest.raises(ConfigError, match="modality must be MRI or CT"):
        pp.merged({"modality": "PET"})
    assert pp.merged({"n4": {"shrink_factor": 4}})["n4"]["iterations"] == [20, 20, 10]
