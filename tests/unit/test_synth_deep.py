"""Synthetic cohort generator and deep features."""

import hashlib

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radstudy.deep import extract_deep_case, fit_deep_model, spearman_with_descriptors
from radstudy.synth import generate_cohort

SPEC = {
    "seed": 5,
    "fov_mm": 32.0,
    "sequences": ["T2"],
    "readers": ["R1", "R3", "R1r"],
    "centers": [
        {
            "name": "A",
            "n": 4,
            "role": "train",
            "spacing": [1.0, 1.0, 2.0],
            "field_strength": 1.5,
            "gain": 1.0,
            "offset": 0.0,
            "noise": 0.05,
            "bias": 0.2,
        },
        {
            "name": "B",
            "n": 3,
            "role": "external",
            "spacing": [1.5, 1.5, 1.5],
            "field_strength": 3.0,
            "gain": 2.0,
            "offset": 100.0,
            "noise": 0.03,
            "bias": 0.1,
        },
    ],
}


def _digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_sheet_geometry_centers_and_determinism(tmp_path):
    sheet = pd.read_csv(generate_cohort(tmp_path / "a", SPEC), sep="\t", dtype={"case_id": str})
    assert list(sheet["case_id"]) == ["A001", "A002", "A003", "A004", "B001", "B002", "B003"]
    assert set(sheet.loc[sheet["center"] == "B", "split"]) == {"external"}
    assert {
        "image_T2",
        "mask_R1",
        "mask_R3",
        "mask_R1r",
        "organ_mask",
        "afp",
        "pretext",
        "label",
        "efs_time",
        "efs_event",
    } <= set(sheet.columns)
    img = sitk.ReadImage(str(tmp_path / "a" / sheet.loc[4, "image_T2"]))
    assert img.GetSpacing() == (1.5, 1.5, 1.5)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / sheet.loc[0, "image_T2"])))
    b = sitk.GetArrayFromImage(img)
    assert np.median(b) > np.median(a) + 50  # center B's gain/offset visible
    generate_cohort(tmp_path / "b", SPEC)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # same spec, same bytes
    only_a = {**SPEC, "centers": SPEC["centers"][:1]}
    generate_cohort(tmp_path / "c", only_a)
    da, dc = _digest(tmp_path / "a" / "images"), _digest(tmp_path / "c" / "images")
    assert all(da[k] == v for k, v in dc.items())  # adding center B changes nothing of A


def test_reader_agreement_is_realistic(tmp_path):
    sheet = pd.read_csv(generate_cohort(tmp_path, SPEC), sep="\t", dtype={"case_id": str})

    def load(p):
        return sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / p))).astype(bool)

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    d = {"R1": [], "R3": [], "R1r": []}
    for _, r in sheet.iterrows():
        truth = load(f"truth/{r['case_id']}/mask_true.nii.gz")
        for k in d:
            d[k].append(dice(load(r[f"mask_{k}"]), truth))
    assert np.mean(d["R1"]) > 0.85 and np.mean(d["R1r"]) > 0.85
    assert np.mean(d["R3"]) < np.mean(d["R1"])  # the novice disagrees more


def test_deep_features_deterministic_and_training_changes_them(tmp_path):
    sheet = pd.read_csv(generate_cohort(tmp_path, SPEC), sep="\t", dtype={"case_id": str})
    r = sheet.iloc[0]
    img, msk = tmp_path / r["image_T2"], tmp_path / r["mask_R1"]
    cfg = {"crop_size": 16, "arch": "resnet18"}
    f1 = extract_deep_case("A001", "T2", img, msk, None, tmp_path / "f1.parquet", cfg, 0)
    f2 = extract_deep_case("A001", "T2", img, msk, None, tmp_path / "f2.parquet", cfg, 0)
    assert f1.shape == (1, 512) and f1.columns[0] == "T2__deep_resnet18_000"
    assert (f1.to_numpy() == f2.to_numpy()).all()
    train = [
        (c, tmp_path / i, tmp_path / m, int(lab))
        for c, i, m, lab in sheet[["case_id", "image_T2", "mask_R1", "label"]].itertuples(
            index=False
        )
    ][:4]
    info = fit_deep_model(train, tmp_path / "w.pt", {**cfg, "epochs": 1, "batch_size": 2}, 0)
    assert info["n_cases"] == 4 and len(info["history"]) == 1
    f3 = extract_deep_case(
        "A001", "T2", img, msk, str(tmp_path / "w.pt"), tmp_path / "f3.parquet", cfg, 0
    )
    assert not np.allclose(f1.to_numpy(), f3.to_numpy())
    rho = spearman_with_descriptors(
        pd.DataFrame({"T2__deep_x": [1.0, 2, 3, 4]}, index=list("abcd")),
        pd.DataFrame({"desc": [2.0, 4, 6, 8]}, index=list("abcd")),
    )
    assert rho["rho"].iloc[0] == 1.0
