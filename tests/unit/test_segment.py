"""SLIC + fuzzy c-means on the synthetic cohort, consensus, agreement tables."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radstudy.agreement import (
    agreement_tables,
    binary_entropy,
    dice,
    entropy_core_rim,
    volume_errors,
    volume_summary,
)
from radstudy.preprocess import resample, resample_mask_to
from radstudy.segment import consensus, slic_fcm
from radstudy.synth import generate_cohort


def test_slic_fcm_reaches_dice_085_on_synthetic_cohort(tmp_path):
    spec = {
        "sequences": ["T2"],
        "readers": ["R1"],
        "seed": 3,
        "centers": [
            {
                "name": "C",
                "n": 5,
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
        mask, member = slic_fcm(
            sitk.GetArrayFromImage(img),
            img.GetSpacing()[::-1],
            sitk.GetArrayFromImage(organ),
            {},
            seed=0,
        )
        assert member.dtype == np.float32 and 0 <= member.min() and member.max() <= 1
        scores.append(dice(mask, sitk.GetArrayFromImage(truth)))
    assert np.mean(scores) >= 0.85, scores


def test_consensus_majority():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 1], bool)
    c = np.array([0, 1, 1, 0, 1], bool)
    assert consensus([a, b, c]).tolist() == [1, 1, 1, 0, 1]
    assert consensus([a, b, c], min_votes=3).tolist() == [0, 0, 0, 0, 1]


def test_dice_volume_and_wilcoxon_known_answers():
    x = np.zeros((10, 10, 10), bool)
    x[2:6] = True  # 400 voxels
    y = np.zeros_like(x)
    y[3:7] = True  # shifted by one slice: overlap 300
    assert dice(x, y) == pytest.approx(0.75)
    err = volume_errors(pd.Series([99.5, 104, 109, 114, 120]), pd.Series([100.0] * 5))
    s = volume_summary(err)
    assert s["share_vpe_lt_1"] == 0.2 and s["share_vpe_lt_5"] == 0.4
    assert s["share_vpe_lt_10"] == 0.6 and s["share_vpe_lt_15"] == 0.8
    big = volume_errors(pd.Series(np.linspace(105, 140, 12)), pd.Series([100.0] * 12))
    assert volume_summary(big)["tendency"] == "over-segmentation"
    assert volume_summary(big)["share_ratio_gt_1"] == 1.0


def test_entropy_core_and_rim_of_a_cylinder():
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(1.0)
    assert binary_entropy(np.array([0.0, 1.0])).tolist() == [0.0, 0.0]
    zz, yy, xx = np.mgrid[:5, :64, :64]
    mask = (yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2
    member = np.where((yy - 32) ** 2 + (xx - 32) ** 2 <= 10**2, 1.0, 0.5)
    out = entropy_core_rim(member, mask, radius_px=10)
    assert out["entropy_core"] == pytest.approx(0.0, abs=0.05)  # core: radius <= ~10
    assert out["entropy_rim"] > 0.9
    tiny = entropy_core_rim(member, (yy - 32) ** 2 + (xx - 32) ** 2 <= 5**2, radius_px=10)
    assert tiny["core_empty"] and np.isnan(tiny["entropy_core"])


def test_agreement_tables_written(tmp_path):
    rng = np.random.default_rng(0)
    cases = {}
    for i in range(4):
        base = np.zeros((8, 16, 16), bool)
        base[2:6, 4:12, 4:12] = True
        noisy = base ^ (rng.uniform(size=base.shape) < 0.02)
        cases[f"c{i}"] = {"R1": base, "R2": noisy, "consensus": base, "slic": noisy}
    soft = {(c, "slic"): m["slic"].astype(np.float32) for c, m in cases.items()}
    agreement_tables(cases, "consensus", soft, tmp_path, {c: 0.001 for c in cases})
    pairs = pd.read_csv(tmp_path / "dice_pairwise.tsv", sep="\t")
    row = pairs[(pairs["name_a"] == "R1") & (pairs["name_b"] == "consensus")].iloc[0]
    assert row["mean"] == 1.0 and row["n"] == 4
    for f in ("dice_matrix", "volume_error", "volume_summary", "entropy"):
        assert (tmp_path / f"{f}.tsv").stat().st_size > 10
