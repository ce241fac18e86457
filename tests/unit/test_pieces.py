"""Per-batch pieces of cohort-level steps (registry scale): merged pieces give the
one-job result byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radstudy import agreement, deep, preprocess, qcrecords
from radstudy.agreement import agreement_tables
from radstudy.casestep import write_marker

TABLES = (
    "dice_cases",
    "dice_pairwise",
    "dice_matrix",
    "volume_error",
    "volume_summary",
    "entropy",
    "entropy_summary",
)


def _write(arr: np.ndarray, path: Path, spacing=(1.0, 1.0, 2.0)) -> str:
    img = sitk.GetImageFromArray(arr.astype(np.uint8) if arr.dtype == bool else arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return str(path)


def _cube(rng, n=20, side=8) -> np.ndarray:
    m = np.zeros((n, n, n), bool)
    z, y, x = rng.integers(3, n - side - 3, 3)
    m[z : z + side, y : y + side, x : x + side] = True
    return m


@pytest.fixture(scope="module")
def seg_cohort(tmp_path_factory):
    """7 cases: 3 readers (noisy copies of a cube) and a soft 'slic' output; case c3's
    R2 mask and c5's image are exclusion markers."""
    folder = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(3)
    masks, members, images = [], [], []
    for i in range(7):
        case = f"c{i}"
        base = _cube(rng)
        for r in ("R1", "R2", "R3", "slic"):
            m = base ^ (rng.uniform(size=base.shape) < 0.03 * (1 + i % 3))
            masks.append([case, r, _write(m, folder / f"{case}_{r}.nii.gz")])
        soft = np.where(base, rng.uniform(0.6, 1, base.shape), 0.1).astype(np.float32)
        members.append([case, "slic", _write(soft, folder / f"{case}_u.nii.gz")])
        img = rng.normal(size=base.shape).astype(np.float32)
        images.append([case, _write(img, folder / f"{case}_img.nii.gz")])
    write_marker(folder / "c3_R2.nii.gz", "case c3: mask is empty")
    write_marker(folder / "c5_img.nii.gz", "case c5: cannot read image")
    return masks, members, images


def _merged(tmp: Path, seg_cohort, splits: list[list[str]]) -> Path:
    masks, members, images = seg_cohort
    pieces = []
    for k, cases in enumerate(splits):
        piece = tmp / f"piece{k}.json"
        agreement.measure_segmentation(
            [r for r in masks if r[0] in cases],
            [r for r in members if r[0] in cases],
            [r for r in images if r[0] in cases],
            ["R1", "R2", "R3"],
            piece,
        )
        pieces.append(piece)
    out = tmp / "merged"
    agreement.merge_segmentation(pieces[::-1], ["R1", "R2", "R3"], out, seed=5)
    return out


def test_segmentation_pieces_merge_to_the_one_job_tables(tmp_path, seg_cohort):
    cases = [f"c{i}" for i in range(7)]
    one = _merged(tmp_path / "one", seg_cohort, [cases])
    three = _merged(tmp_path / "three", seg_cohort, [["c4", "c0"], cases[1:4], ["c5", "c6"]])
    for name in TABLES:
        assert (one / f"{name}.tsv").read_bytes() == (three / f"{name}.tsv").read_bytes(), name
    assert (one / "overlay.png").read_bytes() == (three / "overlay.png").read_bytes()
    # the same as every case at once through radstudy.agreement (consensus of R1-R3)
    masks, members, images = seg_cohort
    by_case: dict = {}
    for case, name, path in masks:
        if case != "c3" or name != "R2":
            by_case.setdefault(case, {})[name] = path
    arrays = {
        c: agreement.read_case_masks(m, ["R1", "R2", "R3"]) for c, m in sorted(by_case.items())
    }
    arrays = {c: m for c, m in arrays.items() if "consensus" in m}  # c3: no consensus
    vox = {c: 0.002 for c in arrays}
    soft = {(c, n): p for c, n, p in members if c in arrays}
    imgs = {c: p for c, p in images if c in arrays and c != "c5"}
    direct = tmp_path / "direct"
    agreement_tables(arrays, "consensus", soft, direct, vox, seed=5, images=imgs)
    for name in TABLES:
        assert (one / f"{name}.tsv").read_bytes() == (direct / f"{name}.tsv").read_bytes(), name
    assert (one / "overlay.png").read_bytes() == (direct / "overlay.png").read_bytes()
    cases_tsv = pd.read_csv(one / "dice_cases.tsv", sep="\t")
    assert "c3" not in set(cases_tsv["case_id"]) and len(set(cases_tsv["case_id"])) == 6
    ent = pd.read_csv(one / "entropy.tsv", sep="\t")
    assert list(ent["case_id"]) == ["c0", "c1", "c2", "c4", "c5", "c6"]


def test_segmentation_piece_records_what_the_figure_needs(tmp_path, seg_cohort):
    masks, members, images = seg_cohort
    piece = agreement.measure_segmentation(
        [r for r in masks if r[0] in ("c3", "c5")],
        [r for r in members if r[0] in ("c3", "c5")],
        [r for r in images if r[0] in ("c3", "c5")],
        ["R1", "R2", "R3"],
        tmp_path / "p.json",
    )
    assert piece["reference"] == "consensus"
    assert list(piece["files"]) == ["c5"]  # c3 lacks a reader: no consensus, left out
    assert piece["files"]["c5"]["image"] is None  # the image is a marker
    assert set(piece["files"]["c5"]["masks"]) == {"R1", "R2", "R3", "slic"}
    assert (tmp_path / "p.json").read_text() == json.dumps(piece, sort_keys=True) + "\n"
    assert np.isnan(piece["entropy"][0]["entropy_core"])  # a tumor narrower than the disc
    assert {r["name"] for r in piece["volumes"]} == {"R1", "R2", "R3", "slic", "consensus"}


def test_segmentation_without_two_sources_draws_a_placeholder(tmp_path, seg_cohort):
    masks, _, images = seg_cohort
    agreement.measure_segmentation(
        [r for r in masks if r[1] == "R1"], [], images, ["R1"], tmp_path / "p.json"
    )
    agreement.merge_segmentation([tmp_path / "p.json"], ["R1"], tmp_path / "out", seed=0)
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 0
    assert pd.read_csv(tmp_path / "out" / "dice_cases.tsv", sep="\t").empty


def _nyul_case(folder: Path, k: int, rng) -> tuple[str, str]:
    arr = np.zeros((10, 20, 20), np.float32)
    organ = np.zeros(arr.shape, np.uint8)
    organ[2:8, 4:16, 4:16] = 1
    n = int(organ.sum())
    arr[organ == 1] = rng.gamma(3.0, 15.0, n) * (1 + 0.3 * k) + 10 * k
    return _write(arr, folder / f"i{k}.nii.gz"), _write(organ, folder / f"o{k}.nii.gz")


def test_nyul_pieces_merge_to_the_one_job_model(tmp_path):
    rng = np.random.default_rng(1)
    files = [_nyul_case(tmp_path, k, rng) for k in range(5)]
    cases = [f"t{k}" for k in range(5)]
    imgs, orgs = [f[0] for f in files], [f[1] for f in files]
    write_marker(tmp_path / "bad.nii.gz", "case t9: cannot read image")
    cfg = {"nyul_scale": [0, 100]}
    direct = preprocess.fit_nyul(imgs, orgs, tmp_path / "direct.json", cfg)
    pieces = []
    for k, part in enumerate([[3, 0], [4, 1, 2]]):
        piece = tmp_path / f"p{k}.json"
        got = preprocess.nyul_piece(
            [cases[i] for i in part] + (["t9"] if k else []),
            [imgs[i] for i in part] + ([str(tmp_path / "bad.nii.gz")] if k else []),
            [orgs[i] for i in part] + ([orgs[0]] if k else []),
            piece,
            cfg,
        )
        assert sorted(got) == sorted(cases[i] for i in part)  # the marker is left out
        pieces.append(piece)
    merged = preprocess.merge_nyul(pieces, "mask", tmp_path / "merged.json", cfg)
    assert merged == direct
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "direct.json").read_bytes()
    fg = preprocess.nyul_piece(cases[:2], imgs[:2], None, tmp_path / "fg.json", cfg)
    assert (
        preprocess.merge_nyul([tmp_path / "fg.json"], "foreground", tmp_path / "f.json", cfg)[
            "region"
        ]
        == preprocess.fit_nyul(imgs[:2], None, tmp_path / "f2.json", cfg)["region"]
    )
    assert len(fg) == 2
    with pytest.raises(ValueError, match="no usable training image"):
        preprocess.merge_nyul([], "mask", tmp_path / "none.json", cfg)


def _deep_case(folder: Path, name: str, seed: int, label: int) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices((20, 20, 20))
    mask = (zz - 10) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2 <= 25
    arr = rng.normal(-150.0, 20.0, mask.shape)
    arr[mask] = rng.normal(0.0, 100.0 if label else 10.0, mask.shape)[mask]
    return (
        _write(arr.astype(np.float32), folder / f"{name}_img.nii.gz", (1.0, 1.0, 1.0)),
        _write(mask, folder / f"{name}_mask.nii.gz", (1.0, 1.0, 1.0)),
    )


def test_deep_crops_train_the_same_network_as_the_one_job_fit(tmp_path):
    import torch

    cfg = {"crop_size": 8, "threads": 1, "device": "cpu", "epochs": 1, "batch_size": 2}
    labels = {"d0": 0, "d1": 1, "d2": 0, "d3": 1, "d4": 1, "d5": np.nan}
    files = {c: _deep_case(tmp_path, c, i, int(labels[c] == 1)) for i, c in enumerate(labels)}
    empty = np.zeros((20, 20, 20), bool)
    files["d4"] = (files["d4"][0], _write(empty, tmp_path / "d4_empty.nii.gz", (1.0, 1.0, 1.0)))
    write_marker(tmp_path / "d6_img.nii.gz", "case d6: cannot read image")
    files["d6"] = (str(tmp_path / "d6_img.nii.gz"), files["d0"][1])
    labels["d6"] = 1
    train = [(c, *files[c], labels[c]) for c in sorted(files) if c != "d6" and c != "d5"]
    direct = deep.fit_deep_model(train, tmp_path / "a" / "w.pt", cfg, 0)
    pieces = []
    for k, part in enumerate([["d3", "d0", "d6"], ["d1", "d2", "d4", "d5"]]):
        piece = tmp_path / f"crops{k}.npz"
        deep.crop_piece([(c, *files[c]) for c in part], piece, cfg)
        pieces.append(piece)
    info = deep.fit_deep_pieces(pieces[::-1], pd.Series(labels), tmp_path / "b" / "w.pt", cfg, 0)
    assert info == direct
    assert info["cases"] == ["d0", "d1", "d2", "d3"] and info["skipped"][0]["case"] == "d4"
    # torch.save names the archive after the file: the same name in two folders
    assert (tmp_path / "a" / "w.pt").read_bytes() == (tmp_path / "b" / "w.pt").read_bytes()
    a, b = torch.load(tmp_path / "a" / "w.pt"), torch.load(tmp_path / "b" / "w.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_qc_pieces_keep_case_then_sequence_order_and_markers(tmp_path):
    rows = []
    for case in ("b2", "a1", "c3"):
        for seq in ("T2", "T1"):
            qc = tmp_path / f"{case}_{seq}_qc.json"
            norm = tmp_path / f"{case}_{seq}_norm.json"
            qc.write_text(json.dumps({"input_spacing": [1.0, 1.0, 2.5], "case": case}))
            norm.write_text(json.dumps({"case_id": case, "quantiles": [1, 99]}))
            rows.append([case, seq, str(qc), str(norm)])
    write_marker(tmp_path / "c3_T1_qc.json", "case c3: image is 2D")
    qcrecords.qc_piece(rows[:4], tmp_path / "p0.json")
    qcrecords.qc_piece(rows[4:], tmp_path / "p1.json")
    records = qcrecords.read_qc_pieces([tmp_path / "p1.json", tmp_path / "p0.json"])
    assert [(c, s) for c, s, _, _ in records] == [
        ("a1", "T2"),
        ("a1", "T1"),
        ("b2", "T2"),
        ("b2", "T1"),
        ("c3", "T2"),
        ("c3", "T1"),
    ]
    assert records[-1][2] is None and records[-1][3] == {"case_id": "c3", "quantiles": [1, 99]}
    assert records[0][2] == {"input_spacing": [1.0, 1.0, 2.5], "case": "a1"}
