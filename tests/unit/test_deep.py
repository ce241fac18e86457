"""Deep features: ROI crops, ResNet feature extraction, checkpoints, training, Spearman."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from radstudy.deep import (
    build_resnet,
    extract_deep_case,
    fit_deep_model,
    load_weights,
    merged,
    prepare_input,
    roi_crop,
    select_device,
    spearman_with_descriptors,
    train_resnet,
)
from radstudy.errors import CaseError, ConfigError

DATA = Path(__file__).resolve().parents[1] / "data"
CFG = {"crop_size": 32, "threads": 1, "device": "cpu"}
SMALL = {**CFG, "crop_size": 16}  # training tests: 16^3 crops keep them fast


def _image(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _sphere(shape, center_zyx, radius_mm, spacing_xyz) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=float)
    sz, sy, sx = spacing_xyz[::-1]
    d2 = ((zz - center_zyx[0]) * sz) ** 2 + ((yy - center_zyx[1]) * sy) ** 2
    return d2 + ((xx - center_zyx[2]) * sx) ** 2 <= radius_mm**2


def _write_case(folder: Path, name: str, seed: int, label: int) -> tuple[Path, Path]:
    """A 24^3 z-scored-like volume (x100) with a spherical tumor; label 1 is textured."""
    rng = np.random.default_rng(seed)
    shape = (24, 24, 24)
    center = 12 + rng.integers(-3, 4, 3)
    mask = _sphere(shape, center, 5.0 + rng.uniform(0, 2), (1.0, 1.0, 1.0))
    arr = rng.normal(-150.0, 20.0, shape)
    tumor = rng.normal(0.0, 100.0 if label else 10.0, shape)
    arr[mask] = tumor[mask]
    folder.mkdir(parents=True, exist_ok=True)
    img_path, mask_path = folder / f"{name}_img.nii.gz", folder / f"{name}_mask.nii.gz"
    sitk.WriteImage(_image(arr.astype(np.float32)), str(img_path))
    sitk.WriteImage(_image(mask.astype(np.uint8)), str(mask_path))
    return img_path, mask_path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deep_cohort")
    labels = [0, 1, 0, 1, 0, 1, 0, 1]
    return [
        (f"C{i:02d}", *_write_case(folder, f"C{i:02d}", 100 + i, lab), lab)
        for i, lab in enumerate(labels)
    ]


# --------------------------------------------------------------------------- crops


def test_roi_crop_3d_centres_the_tumor_in_physical_space():
    # Anisotropic voxels (1 x 1 x 2.5 mm) and an off-centre spherical tumor of radius 6 mm.
    spacing = (1.0, 1.0, 2.5)
    shape = (30, 80, 70)  # z, y, x
    center = (9.0, 20.0, 50.0)
    mask = _sphere(shape, center, 6.0, spacing)
    arr = np.where(mask, 100.0, -100.0).astype(np.float32)
    crop = roi_crop(_image(arr, spacing), _image(mask.astype(np.uint8), spacing), 32, 4.0, 3)
    assert crop.shape == (32, 32, 32) and crop.dtype == np.float32
    inside = crop > 0
    com = np.argwhere(inside).mean(0)
    assert com == pytest.approx([15.5, 15.5, 15.5], abs=1.0)  # tumor centred on each axis
    # The cube spans the tumor extent (13 mm in-plane, 12.5 mm in z: max 13) + 2 x 4 mm.
    side = 13.0 + 8.0
    expected_diameter = 12.0 / side * 32  # voxels across the sphere
    for axis in range(3):
        width = inside.any(axis=tuple(a for a in range(3) if a != axis)).sum()
        assert width == pytest.approx(expected_diameter, abs=2.5)  # round, not squashed
    assert crop[0, 0, 0] == pytest.approx(-100.0, abs=1.0)  # margin holds background


def test_roi_crop_2d_takes_the_largest_slices_in_order():
    shape = (10, 40, 40)
    mask = np.zeros(shape, np.uint8)
    for z, r in {2: 4, 4: 9, 5: 7, 7: 8}.items():  # slice 4 largest, then 7, then 5
        yy, xx = np.indices(shape[1:])
        mask[z][(yy - 20) ** 2 + (xx - 18) ** 2 <= r**2] = 1
    arr = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None], shape).copy()
    crops = roi_crop(_image(arr), _image(mask), 16, 2.0, 2, n_slices=3)
    assert crops.shape == (3, 16, 16)
    # Each crop lies exactly on its slice: intensity == slice index, in slice order.
    assert crops.mean(axis=(1, 2)) == pytest.approx([4.0, 5.0, 7.0], abs=1e-4)
    one = roi_crop(_image(arr), _image(mask), 16, 2.0, 2, n_slices=10)
    assert one.shape == (4, 16, 16)  # only 4 slices hold tumor


def test_roi_crop_rejects_bad_masks(tmp_path):
    arr = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="empty"):
        roi_crop(_image(arr), _image(np.zeros((8, 8, 8), np.uint8)))
    with pytest.raises(ValueError, match="grid"):
        roi_crop(_image(arr), _image(np.ones((8, 8, 9), np.uint8)))
    with pytest.raises(ValueError, match="origin"):
        roi_crop(_image(arr), _image(np.ones((8, 8, 8), np.uint8), origin=(5.0, 0.0, 0.0)))
    sitk.WriteImage(_image(arr), str(tmp_path / "img.nii.gz"))
    sitk.WriteImage(_image(np.zeros((8, 8, 8), np.uint8)), str(tmp_path / "mask.nii.gz"))
    with pytest.raises(CaseError, match=r"^case X7: .*mask\.nii\.gz: mask is empty"):
        extract_deep_case(
            "X7", "T1", tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz", None,
            tmp_path / "f.parquet", CFG, 0,
        )  # fmt: skip
    assert not (tmp_path / "f.parquet").exists()


# --------------------------------------------------------------------------- extraction


def test_extract_shape_names_and_determinism(cohort, tmp_path):
    case, img, msk, _ = cohort[0]
    f1 = extract_deep_case(case, "T1", img, msk, None, tmp_path / "a.parquet", CFG, 0)
    f2 = extract_deep_case(case, "T1", img, msk, "random", tmp_path / "b.parquet", CFG, 0)
    assert f1.shape == (1, 512) and f1.index.tolist() == [case]
    assert f1.index.name == "case_id"
    assert f1.columns[0] == "T1__deep_resnet18_000" and f1.columns[-1] == "T1__deep_resnet18_511"
    assert (f1.dtypes == "float64").all() and np.isfinite(f1.to_numpy()).all()
    assert np.array_equal(f1.to_numpy(), f2.to_numpy())  # bit-identical on the CPU
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), f1)
    f3 = extract_deep_case(case, "T1", img, msk, None, tmp_path / "c.parquet", CFG, 1)
    assert not np.allclose(f1.to_numpy(), f3.to_numpy())  # the seed drives the init
    c1, img1, msk1, _ = cohort[1]
    other = extract_deep_case(c1, "T1", img1, msk1, None, tmp_path / "d.parquet", CFG, 0)
    assert not np.allclose(f1.to_numpy(), other.to_numpy())  # features see the image


def test_extract_center_equals_per_case_and_excludes_bad_cases(cohort, tmp_path):
    from radstudy.casestep import write_marker
    from radstudy.deep import extract_deep_center
    from radstudy.tables import join_center_tables

    (c0, img0, msk0, _), (c1, img1, msk1, _), (c2, img2, _, _) = cohort[:3]
    marker = tmp_path / "m.nii.gz"
    write_marker(marker, "case C01: image: NaN voxels")
    empty = tmp_path / "empty.nii.gz"
    sitk.WriteImage(_image(np.zeros((24, 24, 24), np.uint8)), str(empty))
    cases = [(c2, img2, empty), (c1, marker, msk1), (c0, img0, msk0)]
    table = extract_deep_center(
        cases, "T1", None, tmp_path / "c.parquet", tmp_path / "c.tsv", CFG, 0
    )
    single = extract_deep_case(c0, "T1", img0, msk0, None, tmp_path / "s.parquet", CFG, 0)
    pd.testing.assert_frame_equal(table, single)  # one network load, same numbers
    excl = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    assert excl["case_id"].tolist() == [c1, c2]
    assert excl["reason"].iloc[0] == "case C01: image: NaN voxels"
    assert excl["reason"].iloc[1].startswith("deep features: case C02")
    # joined into a center table: the excluded cases leave with their reason
    radiomics = pd.DataFrame(
        {"T1__x": [1.0, 2.0, 3.0]}, index=pd.Index([c0, c1, c2], name="case_id")
    )
    none = pd.DataFrame(columns=["case_id", "stage", "reason"])
    joined, why = join_center_tables(
        radiomics, none, [(tmp_path / "c.parquet", tmp_path / "c.tsv")]
    )
    assert joined.index.tolist() == [c0] and joined.shape[1] == 513
    assert why.set_index("case_id").loc[c2, "reason"].startswith("deep features: case C02")


def test_extract_2d_averages_slices_and_resnet50_width(cohort, tmp_path):
    case, img, msk, _ = cohort[2]
    cfg = {**CFG, "spatial_dims": 2, "n_slices": 3, "arch": "resnet50"}
    row = extract_deep_case(case, "T2", img, msk, None, tmp_path / "f.parquet", cfg, 0)
    assert row.shape == (1, 2048) and row.columns[-1] == "T2__deep_resnet50_2047"
    # The row is the mean of the per-slice penultimate activations.
    net = build_resnet("resnet50", 2, seed=0, head=False, **merged(cfg)["net"]).eval()
    slices = prepare_input(case, img, msk, cfg)
    assert slices.shape == (3, 32, 32)
    with torch.no_grad():
        per_slice = net(torch.from_numpy(slices[:, None])).double().numpy()
    assert row.to_numpy()[0] == pytest.approx(per_slice.mean(0), rel=1e-5, abs=1e-6)


def test_extract_real_mri_case(tmp_path):
    case = DATA / "sts_mri" / "STS_001"
    row = extract_deep_case(
        "STS_001", "T1", case / "MR_T1_image.nii.gz", case / "MR_T1_mask.nii.gz", None,
        tmp_path / "f.parquet", {**CFG, "intensity_scale": 1000.0}, 0,
    )  # fmt: skip
    assert row.shape == (1, 512) and np.isfinite(row.to_numpy()).all()
    assert row.to_numpy().std() > 0


def test_config_is_checked_and_device_falls_back():
    with pytest.raises(ConfigError, match="arch"):
        merged({"arch": "resnet20"})
    with pytest.raises(ConfigError, match="crop_size"):
        merged({"crop_size": 4})
    assert select_device({"device": "cpu"}) == "cpu"
    assert select_device({"device": "auto"}) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert merged({"net": {"shortcut_type": "A"}})["net"] == {
        "conv1_t_stride": 2,
        "shortcut_type": "A",
    }


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_key_report(cohort, tmp_path, caplog):
    case, img, msk, _ = cohort[3]
    net = build_resnet("resnet18", 3, seed=7, **merged(CFG)["net"])
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pt"
    torch.save(net.state_dict(), plain)
    # MedicalNet / DataParallel layout: {"state_dict": {"module.<key>": tensor}}
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, wrapped)
    with caplog.at_level(logging.INFO, logger="radstudy.deep"):
        a = extract_deep_case(case, "T1", img, msk, str(plain), tmp_path / "a.parquet", CFG, 0)
    assert "2 unexpected ['fc.bias', 'fc.weight']" in caplog.text  # the head is not used
    b = extract_deep_case(case, "T1", img, msk, str(wrapped), tmp_path / "b.parquet", CFG, 3)
    assert np.array_equal(a.to_numpy(), b.to_numpy())  # weights, not the seed, decide
    net.fc = torch.nn.Identity()  # the same network by hand: penultimate activations
    x = torch.from_numpy(prepare_input(case, img, msk, CFG)[None, None])
    with torch.no_grad():
        expected = net.eval()(x).double().numpy()[0]
    assert a.to_numpy()[0] == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_checkpoint_errors_and_rgb_first_layer(tmp_path):
    net = build_resnet("resnet18", 2, seed=0, head=False)
    with pytest.raises(ConfigError, match="does not exist"):
        load_weights(net, tmp_path / "missing.pt")
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "alien.pt")
    with pytest.raises(ConfigError, match="no parameter"):
        load_weights(net, tmp_path / "alien.pt")
    rgb = build_resnet("resnet18", 2, in_channels=3, seed=1, head=False)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    report = load_weights(net, tmp_path / "rgb.pt")
    assert report["shape_mismatch"] == [] and report["missing"] == []
    expected = rgb.state_dict()["conv1.weight"].sum(1, keepdim=True)
    assert torch.equal(net.state_dict()["conv1.weight"], expected)  # ImageNet-style RGB summed
    with pytest.raises(ConfigError, match="no trained checkpoint"):
        extract_deep_case(
            "A", "T1", "i", "m", None, tmp_path / "f.parquet", {"weights": "train"}, 0
        )


# --------------------------------------------------------------------------- training


def test_training_uses_only_given_cases_and_is_deterministic(cohort, tmp_path):
    folder = tmp_path / "cases"  # a copy of the cohort; the 2 held-out cases are corrupted
    folder.mkdir()
    copies = []
    for case, img, msk, lab in cohort:
        new = [folder / Path(p).name for p in (img, msk)]
        for src, dst in zip((img, msk), new, strict=True):
            dst.write_bytes(Path(src).read_bytes())
        copies.append((case, *new, lab))
    train, held_out = copies[:4], copies[6:]
    for _, img, msk, _ in held_out:  # never read by the fit: corrupt them
        img.write_bytes(b"not an image")
        msk.write_bytes(b"not a mask")
    cfg = {**SMALL, "epochs": 1, "batch_size": 4, "weights": "train"}
    info = fit_deep_model(train, tmp_path / "a" / "w.pt", cfg, 0)
    assert info["cases"] == [c for c, *_ in train] and info["n_cases"] == 4
    assert info["skipped"] == [] and info["class_counts"] == [2, 2]
    assert [h["epoch"] for h in info["history"]] == [0]
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in info["history"])
    fit_deep_model(train, tmp_path / "b" / "w.pt", cfg, 0)
    s1, s2 = torch.load(tmp_path / "a" / "w.pt"), torch.load(tmp_path / "b" / "w.pt")
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert (tmp_path / "a" / "w.pt").read_bytes() == (tmp_path / "b" / "w.pt").read_bytes()
    case, img, msk, _ = train[0]
    trained = extract_deep_case(
        case, "T1", img, msk, str(tmp_path / "a" / "w.pt"), tmp_path / "t", cfg, 0
    )
    # Zero epochs saves the seeded initial weights, and skips a broken training case.
    info = fit_deep_model(train[:2] + held_out[:1], tmp_path / "init.pt", {**cfg, "epochs": 0}, 0)
    assert info["cases"] == [c for c, *_ in train[:2]] and info["history"] == []
    assert info["skipped"][0]["case"] == held_out[0][0] and "C06" in info["skipped"][0]["reason"]
    init = extract_deep_case(
        case, "T1", img, msk, str(tmp_path / "init.pt"), tmp_path / "i", cfg, 0
    )
    assert not np.allclose(trained.to_numpy(), init.to_numpy())  # training moved the weights


def test_supervised_training_learns_a_separable_signal(cohort, tmp_path):
    # 2D (largest slice) keeps it fast; textured (1) vs smooth (0) tumors are separable.
    cfg = {**SMALL, "spatial_dims": 2, "n_slices": 1, "epochs": 5, "augment": False}
    crops = [prepare_input(c, i, m, cfg) for c, i, m, _ in cohort]
    labels = [lab for *_, lab in cohort]
    info = train_resnet(crops, labels, {**cfg, "batch_size": 8}, 0, tmp_path / "sup.pt")
    losses = [h["loss"] for h in info["history"]]
    assert len(losses) == 5 and losses[-1] < 0.5 * losses[0]
    assert info["history"][-1]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="both classes"):
        train_resnet(crops, [1] * 8, cfg, 0, tmp_path / "bad.pt")


def test_selfsup_rotation_training_2d(cohort, tmp_path):
    cfg = {**SMALL, "spatial_dims": 2, "n_slices": 2, "weights": "selfsup", "epochs": 1}
    info = fit_deep_model(cohort[:4], tmp_path / "ss.pt", cfg, 0)
    assert info["objective"] == "selfsup" and info["n_samples"] == 8  # 4 cases x 2 slices
    assert info["class_counts"] is None
    assert torch.load(tmp_path / "ss.pt")["fc.weight"].shape == (4, 512)  # 4 rotations
    case, img, msk, _ = cohort[0]
    row = extract_deep_case(case, "T2", img, msk, str(tmp_path / "ss.pt"), tmp_path / "f", cfg, 0)
    assert row.shape == (1, 512) and np.isfinite(row.to_numpy()).all()


# --------------------------------------------------------------------------- Spearman


def test_spearman_with_descriptors_known_answers():
    idx = [f"c{i}" for i in range(6)]
    feats = pd.DataFrame(
        {
            "T2__deep_resnet18_001": [1.0, 2, 3, 4, 5, 6],
            "T1__deep_resnet18_000": [6.0, 5, 4, 3, 2, np.nan],
        },
        index=idx,
    )
    desc = pd.DataFrame(
        {"septations": [0, 0, 1, 1, 2, 2], "border": [1.0, 4, 9, 16, 25, 36]}, index=idx
    ).iloc[::-1]  # rows in another order: matched by case id
    out = spearman_with_descriptors(feats, desc)
    assert list(out.columns) == ["feature", "descriptor", "n", "rho", "p", "q"]
    assert list(out["feature"]) == sorted(out["feature"])
    r = out.set_index(["feature", "descriptor"])
    assert r.loc[("T2__deep_resnet18_001", "border"), "rho"] == pytest.approx(1.0)
    assert r.loc[("T1__deep_resnet18_000", "border"), "rho"] == pytest.approx(-1.0)
    assert r.loc[("T1__deep_resnet18_000", "border"), "n"] == 5  # NaN pair dropped
    assert r.loc[("T2__deep_resnet18_001", "septations"), "rho"] == pytest.approx(16 / np.sqrt(280))
    assert (out["q"] >= out["p"] - 1e-12).all() and out["q"].notna().all()
    const = spearman_with_descriptors(feats, pd.DataFrame({"flat": 1.0}, index=idx))
    assert const["rho"].isna().all() and const["q"].isna().all()
