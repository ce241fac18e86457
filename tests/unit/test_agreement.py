"""Agreement tables of study 2: Dice, volumes, entropy, overlay figure."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import stats

from radstudy.agreement import (
    agreement_tables,
    binary_entropy,
    core_rim,
    dice,
    dice_matrix,
    entropy_core_rim,
    mean_ci,
    overlay_figure,
    pairwise_dice,
    pick_cases,
    ratio_tendency,
    volume_errors,
    volume_summary,
)


def cube(shift=(0, 0, 0), n=20, lo=5, side=8):
    m = np.zeros((n, n, n), bool)
    z, y, x = (lo + s for s in shift)
    m[z : z + side, y : y + side, x : x + side] = True
    return m


def test_dice_of_shifted_cubes():
    a = cube()
    assert dice(a, a) == 1.0
    assert dice(a, cube((1, 0, 0))) == pytest.approx(7 / 8)  # overlap 7 of 8 slices
    assert dice(a, cube((2, 2, 0))) == pytest.approx(2 * 6 * 6 * 8 / (2 * 512))
    assert dice(a, cube((8, 0, 0))) == 0.0
    assert dice(np.zeros(4), np.zeros(4)) == 1.0
    with pytest.raises(ValueError):
        dice(np.zeros(3), np.zeros(4))


def test_pairwise_dice_ci_and_matrix():
    shifts = [0, 1, 2, 3, 1]
    cases = {f"c{i}": {"A": cube(), "B": cube((s, 0, 0)), "C": cube()} for i, s in
             enumerate(shifts)}  # fmt: skip
    pairs = pairwise_dice(cases, n_boot=2000, seed=1)
    assert list(pairs[["name_a", "name_b"]].itertuples(index=False, name=None)) == [
        ("A", "B"),
        ("A", "C"),
        ("B", "C"),
    ]
    ab = pairs.iloc[0]
    vals = np.array([(8 - s) / 8 for s in shifts])
    assert ab["mean"] == pytest.approx(vals.mean()) and ab["n"] == 5
    half = stats.t.ppf(0.975, 4) * vals.std(ddof=1) / np.sqrt(5)
    assert ab["t_low"] == pytest.approx(vals.mean() - half)
    assert ab["t_high"] == pytest.approx(vals.mean() + half)
    assert vals.min() <= ab["ci_low"] < ab["mean"] < ab["ci_high"] <= vals.max()
    assert pairs.iloc[1]["mean"] == 1.0 and pairs.iloc[1]["ci_low"] == 1.0
    # seeded: same CI again; one pair's CI does not depend on the other names
    again = pairwise_dice({c: {"A": m["A"], "B": m["B"]} for c, m in cases.items()}, 2000, 1)
    assert again.iloc[0]["ci_low"] == ab["ci_low"]
    mat = dice_matrix(pairs)
    assert mat.loc["B", "A"] == mat.loc["A", "B"] == pytest.approx(vals.mean())
    assert mat.loc["C", "C"] == 1.0
    one = mean_ci([0.8])
    assert one["mean"] == 0.8 and np.isnan(one["ci_low"]) and np.isnan(one["t_low"])


def test_volume_percentage_error_thresholds():
    true = pd.Series([100.0] * 5, index=list("edcba"))
    pred = pd.Series([99.5, 104, 109, 114, 120], index=list("edcba"))
    err = volume_errors(pred, true)
    assert list(err.index) == list("abcde")
    assert err.loc["e", "vpe_percent"] == pytest.approx(0.5)
    assert err.loc["a", "ratio"] == pytest.approx(1.2)
    s = volume_summary(err)
    assert (s["share_vpe_lt_1"], s["share_vpe_lt_5"]) == (0.2, 0.4)
    assert (s["share_vpe_lt_10"], s["share_vpe_lt_15"]) == (0.6, 0.8)
    assert s["median_vpe_percent"] == pytest.approx(9) and s["n"] == 5
    # zero true volume and missing cases are left out
    assert len(volume_errors(pd.Series({"x": 1.0, "y": 2.0}), pd.Series({"x": 0.0}))) == 0


def test_ratio_tendency_wilcoxon():
    over = ratio_tendency(np.linspace(1.05, 1.4, 12))
    assert over["tendency"] == "over-segmentation" and over["share_ratio_gt_1"] == 1.0
    assert over["wilcoxon_p"] == pytest.approx(2 / 2**12)  # exact two-sided, all positive
    under = ratio_tendency(np.linspace(0.6, 0.95, 12))
    assert under["tendency"] == "under-segmentation" and under["median_ratio"] < 1
    mixed = ratio_tendency([0.9, 1.1, 0.95, 1.05, 0.8, 1.2, 0.97, 1.03])
    assert mixed["tendency"] == "no systematic bias" and mixed["wilcoxon_p"] > 0.5
    assert mixed["median_ratio"] == pytest.approx(1.0)
    exact = ratio_tendency([1.0, 1.0, 1.0])
    assert exact["tendency"] == "no systematic bias" and np.isnan(exact["wilcoxon_p"])


def test_binary_entropy_known_values():
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(1.0)
    assert binary_entropy(np.array([0.0, 1.0])).tolist() == [0.0, 0.0]
    assert binary_entropy(np.array([0.25]))[0] == pytest.approx(0.811278, abs=1e-6)


def test_core_rim_of_a_cylinder():
    zz, yy, xx = np.mgrid[:5, :64, :64]
    r2 = (yy - 32) ** 2 + (xx - 32) ** 2
    mask = r2 <= 20**2
    core, rim = core_rim(mask, 10)
    # core of a disc of radius 20 eroded by a disc of radius 10: about radius 10 per slice
    assert core[2].sum() == pytest.approx(np.pi * 10**2, rel=0.1)
    assert not (core & ~mask).any() and np.array_equal(core | rim, mask)
    member = np.where(r2 <= 10**2, 1.0, 0.5)
    out = entropy_core_rim(member, mask, radius_px=10)
    assert out["entropy_core"] == pytest.approx(0.0, abs=0.05)
    assert out["entropy_rim"] == pytest.approx(1.0, abs=0.02)
    assert out["core_voxels"] + out["rim_voxels"] == mask.sum()
    tiny = entropy_core_rim(member, r2 <= 5**2, radius_px=10)
    assert tiny["core_empty"] and np.isnan(tiny["entropy_core"]) and tiny["entropy_rim"] == 0.0


def test_pick_cases_and_overlay_figure():
    scores = pd.Series({"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.8, "e": 0.6})
    assert pick_cases(scores) == {"best": "a", "median": "c", "worst": "b"}
    masks = {c: {"R1": cube(), "slic": cube((0, 1, 1))} for c in "abc"}
    images = {c: np.random.default_rng(0).normal(size=(20, 20, 20)) for c in "abc"}
    fig = overlay_figure(pick_cases(scores[list("abc")]), images, masks, "R1", scores)
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "best: a (Dice 0.900)"
    assert len(fig.axes[0].collections) >= 2  # one contour per mask


def _write(arr, path, spacing=(1.0, 1.0, 2.0)):
    img = sitk.GetImageFromArray(arr.astype(np.uint8) if arr.dtype == bool else arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return str(path)


def test_agreement_tables_from_paths(tmp_path):
    rng = np.random.default_rng(0)
    masks, soft, images = {}, {}, {}
    for i in range(4):
        base = cube()
        noisy = base ^ (rng.uniform(size=base.shape) < 0.02)
        masks[f"c{i}"] = {
            n: _write(m, tmp_path / f"c{i}_{n}.nii.gz")
            for n, m in {"R1": base, "consensus": base, "slic": noisy, "big": cube(side=9)}.items()
        }
        soft[(f"c{i}", "slic")] = _write(
            np.where(base, 0.9, 0.1).astype(np.float32), tmp_path / f"c{i}_u.nii.gz"
        )
        images[f"c{i}"] = _write(rng.normal(size=base.shape), tmp_path / f"c{i}_img.nii.gz")
    out = tmp_path / "agree"
    tables = agreement_tables(masks, "consensus", soft, out, radius_px=2, images=images)
    pairs = pd.read_csv(out / "dice_pairwise.tsv", sep="\t")
    row = pairs[(pairs["name_a"] == "R1") & (pairs["name_b"] == "consensus")].iloc[0]
    assert row["mean"] == 1.0 and row["n"] == 4
    vol = pd.read_csv(out / "volume_error.tsv", sep="\t")
    big = vol[vol["method"] == "big"]
    # voxel volume read from the files: 512 voxels of 2 ul = 1.024 ml
    assert big["true_ml"].tolist() == pytest.approx([1.024] * 4)
    assert big["ratio"].tolist() == pytest.approx([729 / 512] * 4, rel=1e-5)  # %.6g
    summ = pd.read_csv(out / "volume_summary.tsv", sep="\t").set_index("method")
    assert summ.loc["big", "share_vpe_lt_15"] == 0.0 and summ.loc["R1", "share_vpe_lt_1"] == 1.0
    ent = pd.read_csv(out / "entropy.tsv", sep="\t")
    assert list(ent["case_id"]) == ["c0", "c1", "c2", "c3"] and (ent["method"] == "slic").all()
    h = float(binary_entropy(np.array([0.9]))[0])
    assert ent["entropy_core"].tolist() == pytest.approx([h] * 4, abs=0.05)
    mat = pd.read_csv(out / "dice_matrix.tsv", sep="\t", index_col=0)
    assert list(mat.index) == list(mat.columns) == ["R1", "big", "consensus", "slic"]
    assert (out / "overlay.png").stat().st_size > 1000
    assert set(tables["overlay_cases"]) == {"best", "median", "worst"}
    # deterministic bytes
    agreement_tables(masks, "consensus", soft, tmp_path / "again", radius_px=2)
    for f in ("dice_pairwise", "dice_matrix", "volume_error", "volume_summary", "entropy"):
        assert (out / f"{f}.tsv").read_bytes() == (tmp_path / "again" / f"{f}.tsv").read_bytes()
