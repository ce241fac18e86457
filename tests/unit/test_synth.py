"""Synthetic cohort generator: sheet, geometry, readers, outcome, center effects, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.stats import spearmanr

from radstudy.errors import ConfigError
from radstudy.synth import DEFAULTS, TISSUE, generate_cohort, main, merge_spec

CENTER_A = {
    "name": "A",
    "n": 4,
    "role": "train",
    "spacing": [0.8, 0.8, 2.0],
    "field_strength": 1.5,
    "gain": 1.0,
    "offset": 0.0,
    "noise": 0.06,
    "bias": 0.25,
}
CENTER_B = {
    "name": "B",
    "n": 4,
    "role": "external",
    "spacing": [1.0, 1.0, 1.0],
    "field_strength": 3.0,
    "gain": 1.5,
    "offset": 50.0,
    "noise": 0.03,
    "bias": 0.15,
}
TINY = {"seed": 3, "fov_mm": 32.0, "centers": [CENTER_A, CENTER_B]}

SHEET_COLUMNS = [
    "case_id",
    "center",
    "split",
    "image_T1",
    "image_T2",
    "mask_R1",
    "mask_R2",
    "mask_R3",
    "mask_R1r",
    "organ_mask",
    "age",
    "sex",
    "afp",
    "pretext",
    "desc_border",
    "desc_heterogeneity",
    "desc_septations",
    "label",
    "efs_time",
    "efs_event",
    "field_strength",
]


def _arr(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    sheet = generate_cohort(out, TINY)
    return out, pd.read_csv(sheet, sep="\t", dtype={"case_id": str})


def test_sheet_columns_splits_and_paths(tiny):
    out, sheet = tiny
    assert list(sheet.columns) == SHEET_COLUMNS
    assert sheet["case_id"].tolist() == [f"{c}{i:03d}" for c in "AB" for i in range(1, 5)]
    a, b = sheet[sheet.center == "A"], sheet[sheet.center == "B"]
    assert set(b["split"]) == {"external"}
    assert set(a["split"]) <= {"train", "test"} and (a["split"] == "train").sum() >= 2
    # relative paths that exist beside the sheet
    path_cols = [c for c in SHEET_COLUMNS if c.startswith(("image_", "mask_")) or c == "organ_mask"]
    for col in path_cols:
        for rel in sheet[col]:
            assert not Path(rel).is_absolute() and (out / rel).is_file(), rel
    for case in sheet["case_id"]:
        assert (out / "truth" / case / "mask_true.nii.gz").is_file()
    assert set(sheet["sex"]) <= {0, 1} and sheet["pretext"].between(1, 4).all()
    assert sheet["desc_border"].between(0, 3).all() and set(sheet["desc_septations"]) <= {0, 1}
    assert (sheet["afp"] > 0).all() and (sheet["efs_time"] > 0).all()
    assert set(sheet["efs_event"]) <= {0, 1} and set(sheet["label"]) <= {0, 1}
    assert sheet.set_index("center")["field_strength"].groupby(level=0).first().to_dict() == {
        "A": 1.5,
        "B": 3.0,
    }
    truth = pd.read_csv(out / "truth" / "cases_truth.tsv", sep="\t", dtype={"case_id": str})
    assert truth["case_id"].tolist() == sheet["case_id"].tolist()
    assert {"true_volume_ml", "heterogeneity", "risk"} <= set(truth.columns)
    centers = pd.read_csv(out / "truth" / "centers.tsv", sep="\t")
    assert centers.set_index("center").loc["B", "gain"] == pytest.approx(1.5)


def test_sheet_passes_the_cohort_schema(tiny):
    from radstudy.cohort import load_cohort
    from radstudy.config import with_defaults

    out, _ = tiny
    schema = Path(__file__).resolve().parents[2] / "rules" / "schemas" / "cases.schema.yaml"
    cfg = {
        "cohort": {
            "sequences": ["T1", "T2"],
            "readers": ["R1", "R2", "R3", "R1r"],
            "reference_reader": "R1",
            "clinical": ["age", "afp", "pretext"],
            "require": ["afp", "pretext"],
            "inclusion": [],
        },
        "endpoints": {
            "label": {"type": "binary", "column": "label"},
            "efs": {"type": "survival", "time": "efs_time", "event": "efs_event"},
        },
    }
    cases, excluded = load_cohort(out / "cases.tsv", with_defaults(cfg), schema)
    assert len(cases) == 8 and len(excluded) == 0


def test_images_and_masks_on_the_center_grid(tiny):
    out, sheet = tiny
    origins = {}
    for _, row in sheet.iterrows():
        spec = CENTER_A if row["center"] == "A" else CENTER_B
        ref = sitk.ReadImage(str(out / row["image_T1"]))
        assert ref.GetSpacing() == pytest.approx(spec["spacing"], abs=1e-5)
        assert ref.GetDirection() == pytest.approx(np.eye(3).ravel())
        assert ref.GetPixelID() == sitk.sitkFloat32
        # same physical field of view (32 mm) on every center's grid
        extent = np.asarray(ref.GetSize()) * np.asarray(ref.GetSpacing())
        assert extent == pytest.approx([32.0] * 3, abs=1.0)
        for col in ("image_T2", "mask_R1", "mask_R3", "mask_R1r", "organ_mask"):
            img = sitk.ReadImage(str(out / row[col]))
            assert img.GetSize() == ref.GetSize() and img.GetOrigin() == ref.GetOrigin()
            if col != "image_T2":
                assert img.GetPixelID() == sitk.sitkUInt8
        tumor = _arr(out / "truth" / row["case_id"] / "mask_true.nii.gz").astype(bool)
        liver = _arr(out / row["organ_mask"]).astype(bool)
        assert tumor.sum() > 20 and (tumor & ~liver).sum() == 0
        # tumor hypo-intense on T1 and hyper-intense on T2 relative to the liver
        ring = liver & ~ndimage.binary_dilation(tumor, iterations=2)
        t1, t2 = _arr(out / row["image_T1"]), _arr(out / row["image_T2"])
        assert np.median(t1[tumor]) < np.median(t1[ring])
        assert np.median(t2[tumor]) > np.median(t2[ring])
        origins[row["center"]] = ref.GetOrigin()
    assert origins["A"] != origins["B"]


def test_reader_masks_disagree_like_readers(tiny):
    out, sheet = tiny
    d = {k: [] for k in ("R1", "R2", "R3", "R1-R1r", "R1-R2")}
    for _, row in sheet.iterrows():
        true = _arr(out / "truth" / row["case_id"] / "mask_true.nii.gz")
        m = {r: _arr(out / row[f"mask_{r}"]) for r in ("R1", "R2", "R3", "R1r")}
        for r in ("R1", "R2", "R3"):
            d[r].append(_dice(m[r], true))
        d["R1-R1r"].append(_dice(m["R1"], m["R1r"]))
        d["R1-R2"].append(_dice(m["R1"], m["R2"]))
        assert not np.array_equal(m["R1"], m["R1r"])  # a repeat is not a copy
    mean = {k: float(np.mean(v)) for k, v in d.items()}
    assert 0.8 < mean["R1"] < 0.99 and 0.8 < mean["R2"] < 0.99
    assert 0.5 < mean["R3"] < min(mean["R1"], mean["R2"]) - 0.05
    assert mean["R1-R1r"] > mean["R1-R2"] > 0.75


def test_center_gain_and_offset_visible(tmp_path):
    # no bias field, little noise, same grid: the liver median is gain * tissue + offset
    base = {k: v for k, v in CENTER_B.items() if k not in ("gain", "offset")}
    centers = [
        {**base, "name": "G1", "n": 2, "role": "train", "gain": 1.0, "offset": 0.0, "bias": 0.0},
        {**base, "name": "G2", "n": 2, "role": "train", "gain": 2.0, "offset": 100.0, "bias": 0.0},
    ]
    spec = {"seed": 5, "fov_mm": 32.0, "readers": ["R1"], "centers": centers}
    sheet = pd.read_csv(generate_cohort(tmp_path, spec), sep="\t", dtype={"case_id": str})
    for _, row in sheet.iterrows():
        gain, offset = (1.0, 0.0) if row["center"] == "G1" else (2.0, 100.0)
        liver = ndimage.binary_erosion(_arr(tmp_path / row["organ_mask"]), iterations=2)
        liver &= ~ndimage.binary_dilation(
            _arr(tmp_path / "truth" / row["case_id"] / "mask_true.nii.gz"), iterations=3
        )
        for seq in ("T1", "T2"):
            med = float(np.median(_arr(tmp_path / row[f"image_{seq}"])[liver]))
            assert med == pytest.approx(gain * TISSUE[seq]["liver"] + offset, rel=0.08)


def test_bias_field_is_smooth_and_multiplicative(tmp_path):
    # the same case with and without bias: the ratio of the liver signal varies
    # smoothly by about the center's amplitude
    c = {**CENTER_B, "n": 1, "role": "train", "noise": 0.005}
    spec = {"seed": 8, "fov_mm": 32.0, "sequences": ["T1"], "readers": ["R1"]}
    flat = generate_cohort(tmp_path / "flat", {**spec, "centers": [{**c, "bias": 0.0}]})
    bent = generate_cohort(tmp_path / "bent", {**spec, "centers": [{**c, "bias": 0.3}]})
    a = _arr(flat.parent / "images" / "B001_T1.nii.gz")
    b = _arr(bent.parent / "images" / "B001_T1.nii.gz")
    liver = _arr(flat.parent / "masks" / "B001_liver.nii.gz").astype(bool)
    ratio = b[liver] / a[liver]
    assert 0.1 < ratio.max() - ratio.min() < 0.7
    assert np.abs(np.median(ratio) - 1.0) < 0.3


def test_outcome_follows_the_tumor(tmp_path):
    c = {**CENTER_B, "n": 40, "role": "train"}
    spec = {"seed": 11, "fov_mm": 32.0, "sequences": ["T2"], "readers": ["R1"], "centers": [c]}
    sheet = pd.read_csv(generate_cohort(tmp_path, spec), sep="\t", dtype={"case_id": str})
    truth = pd.read_csv(tmp_path / "truth" / "cases_truth.tsv", sep="\t", dtype={"case_id": str})
    assert 0.25 <= sheet["label"].mean() <= 0.75
    assert 0.1 <= 1 - sheet["efs_event"].mean() <= 0.6
    assert spearmanr(truth["risk"], sheet["label"])[0] > 0.6
    assert spearmanr(truth["heterogeneity"], sheet["label"])[0] > 0.25
    assert spearmanr(truth["risk"], sheet["efs_time"])[0] < -0.3
    assert spearmanr(truth["heterogeneity"], sheet["desc_heterogeneity"])[0] > 0.6
    assert spearmanr(truth["irregularity"], sheet["desc_border"])[0] > 0.6
    assert spearmanr(truth["true_volume_ml"], sheet["pretext"])[0] > 0.5
    # the heterogeneity is visible in the image: coefficient of variation in the tumor
    cv = []
    for _, row in sheet.iterrows():
        img = _arr(tmp_path / row["image_T2"])
        vals = img[_arr(tmp_path / row["mask_R1"]).astype(bool)]
        cv.append(vals.std() / vals.mean())
    assert spearmanr(truth["heterogeneity"], cv)[0] > 0.6
    # discretised volume close to the nominal ellipsoid volume
    ratio = truth["true_volume_ml"] / truth["nominal_volume_ml"]
    assert ratio.median() == pytest.approx(1.0, abs=0.2)


def test_same_spec_same_bytes_and_new_center_leaves_old_files(tmp_path, tiny):
    out, _ = tiny
    spec_small = {**TINY, "centers": [CENTER_A], "readers": ["R1r", "R2"]}
    first = generate_cohort(tmp_path / "one", spec_small).parent
    again = generate_cohort(tmp_path / "two", spec_small).parent
    assert _files(first) == _files(again)
    # the full tiny cohort has center B added (and more readers): A's files are unchanged
    full = _files(out)
    for name, data in _files(first).items():
        if name.startswith(("images/", "masks/", "truth/A")):
            assert full[name] == data, name
    a_rows = pd.read_csv(first / "cases.tsv", sep="\t", dtype={"case_id": str})
    full_rows = pd.read_csv(out / "cases.tsv", sep="\t", dtype={"case_id": str})
    shared = ["case_id", "split", "age", "afp", "label", "efs_time", "efs_event"]
    pd.testing.assert_frame_equal(a_rows[shared], full_rows[full_rows.center == "A"][shared])


def test_missing_fraction_blanks_afp_or_pretext(tmp_path):
    c = {**CENTER_B, "n": 12, "role": "train"}
    spec = {"fov_mm": 24.0, "sequences": ["T2"], "readers": ["R1"], "centers": [c]}
    full = pd.read_csv(generate_cohort(tmp_path / "full", spec), sep="\t")
    gaps = pd.read_csv(
        generate_cohort(tmp_path / "gaps", {**spec, "missing_fraction": 0.5}), sep="\t"
    )
    assert full[["afp", "pretext"]].notna().all().all()
    blank = gaps["afp"].isna() | gaps["pretext"].isna()
    assert 2 <= blank.sum() <= 10 and not (gaps["afp"].isna() & gaps["pretext"].isna()).any()
    # the other cells are the same values
    pd.testing.assert_series_equal(full.loc[~blank, "afp"], gaps.loc[~blank, "afp"])


def test_ct_modality(tmp_path):
    c = {**CENTER_B, "n": 2, "role": "train", "gain": 1.0, "offset": 0.0, "noise": 0.02}
    spec = {"modality": "CT", "fov_mm": 32.0, "readers": ["R1"], "centers": [c]}
    sheet = pd.read_csv(generate_cohort(tmp_path, spec), sep="\t", dtype={"case_id": str})
    assert [col for col in sheet.columns if col.startswith("image_")] == ["image_CT"]
    img = sitk.ReadImage(str(tmp_path / sheet.loc[0, "image_CT"]))
    assert img.GetPixelID() == sitk.sitkInt16
    arr = sitk.GetArrayFromImage(img)
    liver = ndimage.binary_erosion(_arr(tmp_path / sheet.loc[0, "organ_mask"]), iterations=2)
    liver &= ~ndimage.binary_dilation(_arr(tmp_path / sheet.loc[0, "mask_R1"]), iterations=3)
    assert np.median(arr[liver]) == pytest.approx(60, abs=4)
    assert np.median(arr[0]) == pytest.approx(-1000, abs=15)  # air in the corner slice


def test_cli_scales_the_default_centers(tmp_path):
    main(["--out", str(tmp_path), "--n-cases", "8", "--seed", "4"])
    sheet = pd.read_csv(tmp_path / "cases.tsv", sep="\t", dtype={"case_id": str})
    assert len(sheet) == 8
    assert sorted(sheet["center"].unique()) == [c["name"] for c in DEFAULTS["centers"]]
    assert set(sheet.loc[sheet.center == "D", "split"]) == {"external"}


@pytest.mark.parametrize(
    "bad",
    [
        {"modality": "PET"},
        {"sequences": ["FLAIR"]},
        {"test_fraction": 1.0},
        {"missing_fraction": 1.5},
        {"centres": []},
        {"centers": [CENTER_A, CENTER_A]},
        {"centers": [{**CENTER_A, "role": "validation"}]},
        {"centers": [{**CENTER_A, "spacing": [1.0, 1.0]}]},
    ],
)
def test_bad_spec_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        merge_spec(bad)
