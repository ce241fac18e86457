"""radstudy.nnunet and the segmentation settings around it (no training here: the
tiny end-to-end training is tests/integration/test_nnunet.py)."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from radstudy import nnunet
from radstudy.casestep import write_marker
from radstudy.config import nnunet_trains, pseudo_readers, segmentation_methods

HAS_NNUNET = importlib.util.find_spec("nnunetv2") is not None
needs_nnunet = pytest.mark.skipif(
    not HAS_NNUNET, reason="nnunetv2 is not installed (optional extra: make venv-nnunet)"
)


def seg(**kw) -> dict:
    return {"method": "readers", "nnunet_model": "", "nnunet_train": True, **kw}


def test_methods_and_pseudo_readers():
    assert segmentation_methods(seg()) == [] and pseudo_readers(seg()) == []
    assert pseudo_readers(seg(method="slic_fcm")) == ["slic"]
    assert pseudo_readers(seg(method="nnunet")) == ["nnunet"]
    assert pseudo_readers(seg(method=["slic_fcm", "nnunet"])) == ["slic", "nnunet"]
    # training skipped and no ready model: nnU-Net is left out, SLIC stays
    assert pseudo_readers(seg(method=["slic_fcm", "nnunet"], nnunet_train=False)) == ["slic"]
    # a ready model needs no training
    ready = seg(method="nnunet", nnunet_train=False, nnunet_model="/models/x")
    assert pseudo_readers(ready) == ["nnunet"] and not nnunet_trains(ready)
    assert nnunet_trains(seg(method=["nnunet"]))
    assert not nnunet_trains(seg(method="slic_fcm"))


def test_training_job_asks_for_a_gpu_only_with_cuda():
    base = {"nnunet_configuration": "2d", "nnunet_folds": ["all"], "nnunet_trainer": "t"}
    assert nnunet.train_gpus({**base, "nnunet_device": "cuda"}) == 1
    assert nnunet.train_gpus({**base, "nnunet_device": "cpu"}) == 0
    assert nnunet.train_gpus({**base, "nnunet_device": "auto"}) == 0
    assert nnunet.predict_device({"nnunet_device": "cpu"}) == "cpu"
    assert nnunet.predict_device({"nnunet_device": "cuda"}) == "auto"
    assert nnunet.train_settings({**base, "nnunet_device": "cpu"}) == {
        "configuration": "2d",
        "folds": ["all"],
        "trainer": "t",
        "device": "cpu",
    }


def test_folders_are_set_per_job_under_the_root(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(k, "/somewhere/else")
    env = nnunet.use_folders(tmp_path, threads=1)
    assert os.environ["nnUNet_raw"] == str(tmp_path.resolve() / "raw")
    assert os.environ["nnUNet_preprocessed"] == str(tmp_path.resolve() / "preprocessed")
    assert os.environ["nnUNet_results"] == str(tmp_path.resolve() / "model")
    assert env["nnUNet_n_proc_DA"] == "0"  # one thread: augmentation in the main process
    assert nnunet.use_folders(tmp_path, threads=3)["nnUNet_n_proc_DA"] == "2"


def test_parse_folds_and_device():
    assert nnunet.parse_folds(["all", 0, "3"]) == ["all", 0, 3]
    assert nnunet.resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        nnunet.resolve_device("tpu")


def test_model_folder_finds_the_one_model(tmp_path):
    model = tmp_path / "Dataset001_T2" / "nnUNetTrainer__nnUNetPlans__2d"
    model.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no nnU-Net v2 model folders"):
        nnunet.model_folder(tmp_path)
    (model / "plans.json").write_text("{}")
    assert nnunet.model_folder(tmp_path) == model
    assert nnunet.model_folder(model) == model
    other = tmp_path / "Dataset001_T2" / "nnUNetTrainer_5epochs__nnUNetPlans__2d"
    other.mkdir()
    (other / "plans.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="2 nnU-Net v2 model folders"):
        nnunet.model_folder(tmp_path)


def _volume(path, arr, spacing=(1.0, 1.0, 2.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((3.0, -2.0, 1.0))
    sitk.WriteImage(img, str(path))
    return path


@needs_nnunet
def test_export_writes_a_raw_dataset_of_the_given_cases_only(tmp_path):
    rng = np.random.default_rng(0)
    cases = {}
    for case in ("A1", "A2", "B1"):
        image = _volume(tmp_path / f"{case}.nii.gz", rng.normal(size=(6, 8, 8)).astype(np.float32))
        mask = np.zeros((6, 8, 8), np.uint8)
        mask[2:4, 2:5, 2:5] = 2  # any label > 0 is the tumor
        cases[case] = (image, _volume(tmp_path / f"{case}_m.nii.gz", mask))
    write_marker(tmp_path / "bad.nii.gz", "QC failed: empty image")
    cases["X9"] = (tmp_path / "bad.nii.gz", tmp_path / "bad.nii.gz")
    out = nnunet.export_dataset(cases, tmp_path / "raw", "T2", "MRI")
    assert out["cases"] == ["A1", "A2", "B1"] and out["left_out"] == {
        "X9": "QC failed: empty image"
    }
    ds = tmp_path / "raw" / "Dataset001_T2"
    assert nnunet.exported_cases(tmp_path / "raw", "T2") == ["A1", "A2", "B1"]
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["numTraining"] == 3 and meta["channel_names"] == {"0": "T2"}
    assert meta["labels"] == {"background": 0, "tumor": 1} and meta["file_ending"] == ".nii.gz"
    label = sitk.ReadImage(str(ds / "labelsTr" / "A1.nii.gz"))
    assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1}
    assert label.GetSpacing() == (1.0, 1.0, 2.0) and label.GetOrigin() == (3.0, -2.0, 1.0)
    # CT: nnU-Net's CT normalisation (channel name CT)
    nnunet.export_dataset(cases, tmp_path / "ct", "CT", "CT")
    meta = json.loads((tmp_path / "ct" / "Dataset001_CT" / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}


@needs_nnunet
def test_short_schedule_trainers_resolve_without_timm():
    cls = nnunet.trainer_class("nnUNetTrainer_1epoch")
    assert cls.__name__ == "nnUNetTrainer_1epoch"
    assert nnunet.trainer_class("nnUNetTrainer").__name__ == "nnUNetTrainer"


def test_without_nnunetv2_says_how_to_install(tmp_path):
    if HAS_NNUNET:
        pytest.skip("nnunetv2 is installed")
    with pytest.raises(RuntimeError, match="make venv-nnunet"):
        nnunet.export_dataset({}, tmp_path, "T2", "MRI")


def test_predict_batch_passes_excluded_cases_on_without_loading_the_model(tmp_path):
    """A batch whose images are all exclusion markers writes markers for each case's
    mask and membership (the reason kept) and never loads the model."""
    from radstudy.casestep import marker_reason

    images = {}
    for case in ("P1", "P2"):
        images[case] = str(tmp_path / f"{case}_prepared.nii.gz")
        write_marker(images[case], f"case {case}: image unreadable")
    out = tmp_path / "batch001"
    status = nnunet.predict_batch(images, tmp_path / "no-model", ["all"], out, device="cpu")
    assert status == {c: f"case {c}: image unreadable" for c in images}
    for case in images:
        for path in nnunet.batch_files(out, case):
            assert marker_reason(path) == f"case {case}: image unreadable"
