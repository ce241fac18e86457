"""nnU-Net v2 inside the study: export the training cases, plan, train, predict.

The pseudo-reader ``nnunet`` (segmentation.method nnunet) comes from a model that is
either trained here, on the TRAINING cases only, or given ready (segmentation.nnunet_model):

1. :func:`export_dataset` writes the training cases (the workflow's prepared images:
   resampled, N4 / HU window; the reference reader's masks on that grid) as an nnU-Net
   v2 raw dataset (``Dataset001_{seq}``: dataset.json, imagesTr/, labelsTr/);
2. :func:`plan_and_preprocess`: nnU-Net's fingerprint, experiment planning and
   preprocessing of the configured configuration (2d / 3d_fullres / 3d_lowres);
3. :func:`train`: the configured trainer (the plain ``nnUNetTrainer`` or a short
   schedule nnunetv2 ships, e.g. ``nnUNetTrainer_5epochs``) on each configured fold;
4. :func:`predict_case`: one case through nnU-Net's predictor (ensemble of the folds);
   the hard mask is ``mask_nnunet``, the foreground probability the membership map
   (its entropy goes into the agreement tables, as SLIC + FCM's does).

Everything runs through nnunetv2's own Python API. Its three folders (``nnUNet_raw``,
``nnUNet_preprocessed``, ``nnUNet_results``) are set by :func:`use_folders` for each
job, under one root in results/, never taken from the user's environment.

nnunetv2 is an optional extra (``make venv-nnunet``); without it these functions raise
one line saying how to install it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radstudy.casestep import marker_reason
from radstudy.imageio import write_image

log = logging.getLogger(__name__)

NNUNET_MISSING = (
    "nnU-Net needs the optional extra nnunetv2: make venv-nnunet (requirements-nnunet.txt)"
)
DATASET_ID = 1
PLANS = "nnUNetPlans"
CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
CHECKPOINT = "checkpoint_final.pth"
LABELS = {"background": 0, "tumor": 1}
# nnU-Net's folders under one root (the job's results/nnunet/{seq}/...)
FOLDERS = {"nnUNet_raw": "raw", "nnUNet_preprocessed": "preprocessed", "nnUNet_results": "model"}


def dataset_name(seq: str) -> str:
    """nnU-Net's dataset folder name of one sequence (``Dataset001_T2``)."""
    return f"Dataset{DATASET_ID:03d}_{seq}"


def use_folders(root, threads: int = 1, augmentation_workers: int | None = None) -> dict[str, str]:
    """Point nnU-Net at ``root``/raw, /preprocessed and /model for this process, and
    keep it to ``threads`` (torch threads, worker processes; data-augmentation workers
    default to threads - 1: none with one thread, augmentation in the main process).
    Returns the variables set."""
    root = Path(root).resolve()
    env = {k: str(root / v) for k, v in FOLDERS.items()}
    threads = max(1, int(threads))
    workers = threads - 1 if augmentation_workers is None else augmentation_workers
    env["nnUNet_def_n_proc"] = str(threads)
    env["nnUNet_n_proc_DA"] = str(max(0, int(workers)))
    os.environ.update(env)
    try:
        import torch
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err
    torch.set_num_threads(threads)
    return env


def resolve_device(device: str) -> str:
    """``auto``: cuda where torch sees a GPU, else cpu."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"segmentation.nnunet_device {device!r} is not auto, cpu or cuda")
    if device != "auto":
        return device
    try:
        import torch
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err
    return "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------ export
def export_dataset(
    cases: Mapping[str, tuple],
    raw_root,
    seq: str,
    modality: str,
) -> dict:
    """Write the training cases as nnU-Net v2 raw dataset ``Dataset001_{seq}`` under
    ``raw_root``: imagesTr/{case}_0000.nii.gz (the image as it is), labelsTr/{case}.nii.gz
    (the mask, > 0, uint8, on the image's geometry) and dataset.json (nnU-Net's
    generate_dataset_json; channel ``CT`` for CT so nnU-Net uses its CT normalisation).

    ``cases`` maps case id -> (image path, mask path): the caller passes TRAINING cases
    only. A case whose image or mask is an exclusion marker is left out. Returns
    ``{"dataset", "cases", "left_out": {case: reason}}``.
    """
    try:
        from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err

    out = Path(raw_root) / dataset_name(seq)
    if out.exists():
        shutil.rmtree(out)
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    kept, left_out = [], {}
    for case, (image, mask) in sorted(cases.items()):
        reason = marker_reason(image) or marker_reason(mask)
        if reason is not None:
            left_out[case] = reason
            continue
        img = sitk.ReadImage(str(image))
        lab = sitk.GetImageFromArray(
            (sitk.GetArrayFromImage(sitk.ReadImage(str(mask))) > 0).astype(np.uint8)
        )
        if lab.GetSize() != img.GetSize():
            left_out[case] = (
                f"mask grid {lab.GetSize()} differs from the image grid {img.GetSize()}"
            )
            continue
        lab.CopyInformation(img)
        shutil.copyfile(image, out / "imagesTr" / f"{case}_0000.nii.gz")
        write_image(lab, out / "labelsTr" / f"{case}.nii.gz")
        kept.append(case)
    if len(kept) < 2:
        raise ValueError(f"nnU-Net needs 2+ training cases with a mask, got {len(kept)}")
    generate_dataset_json(
        str(out),
        channel_names={0: "CT" if modality == "CT" else seq},
        labels=LABELS,
        num_training_cases=len(kept),
        file_ending=".nii.gz",
        dataset_name=dataset_name(seq),
        description="radstudy: training cases only (prepared images, reference-reader masks)",
        converted_by="radstudy",
        license="the study's own data",
    )
    for case, reason in left_out.items():
        log.warning("nnU-Net export: %s left out: %s", case, reason)
    return {"dataset": dataset_name(seq), "cases": kept, "left_out": left_out}


def exported_cases(raw_root, seq: str) -> list[str]:
    """Case ids in an exported dataset's imagesTr (what nnU-Net trains on)."""
    images = Path(raw_root) / dataset_name(seq) / "imagesTr"
    return sorted(p.name.removesuffix("_0000.nii.gz") for p in images.glob("*_0000.nii.gz"))


# ---------------------------------------------------------------- plan and preprocess
def plan_and_preprocess(root, seq: str, configuration: str, threads: int = 1) -> dict:
    """nnU-Net's fingerprint (with its dataset integrity check), default experiment
    planner and preprocessing of ``configuration``, for ``Dataset001_{seq}`` under
    ``root``. Returns the configurations nnU-Net planned."""
    if configuration not in CONFIGURATIONS:
        raise ValueError(f"nnU-Net configuration {configuration!r} is not one of {CONFIGURATIONS}")
    # the planner sets torch's threads to nnUNet_n_proc_DA (0 is refused there)
    use_folders(root, threads, augmentation_workers=max(1, int(threads)))
    try:
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprints,
            plan_experiments,
            preprocess,
        )
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err

    n = max(1, int(threads))
    extract_fingerprints(
        [DATASET_ID],
        num_processes=n,
        check_dataset_integrity=True,
        verbose=False,
        show_progress_bar=False,
    )
    plans_name = plan_experiments([DATASET_ID])
    planned = sorted(_plans(root, seq)["configurations"])
    if configuration not in planned:
        raise ValueError(
            f"nnU-Net planned no {configuration} configuration for these images "
            f"(planned: {', '.join(planned)}); set segmentation.nnunet_configuration"
        )
    preprocess(
        [DATASET_ID],
        plans_name,
        configurations=(configuration,),
        num_processes=(n,),
        show_progress_bar=False,
    )
    return {"plans": plans_name, "configurations": planned}


def _plans(root, seq: str) -> dict:
    path = Path(root) / FOLDERS["nnUNet_preprocessed"] / dataset_name(seq) / f"{PLANS}.json"
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- training
TRAINER_MODULES = (
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer",
    "nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs",
)


def trainer_class(name: str):
    """nnU-Net's trainer class ``name``: the plain trainer and the short schedules are
    imported from their modules; any other through nnU-Net's own class search.

    (nnU-Net's search imports every trainer module it ships, the Primus ones too, and
    those need timm and torchvision, whose PyPI build does not load on the CPU torch
    this project pins; the trainers the study uses need neither.)"""
    try:
        for module in TRAINER_MODULES:
            cls = getattr(importlib.import_module(module), name, None)
            if cls is not None:
                return cls
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err
    return recursive_find_trainer_class_by_name(name)


def parse_folds(folds: Iterable) -> list:
    """Folds as nnU-Net takes them: integers, or ``"all"`` (every training case)."""
    return [f if f == "all" else int(f) for f in folds]


def train(
    root,
    seq: str,
    configuration: str,
    folds: Iterable,
    trainer: str,
    device: str,
    threads: int = 1,
    seed: int = 0,
) -> dict:
    """Train ``trainer`` on each fold of the preprocessed ``Dataset001_{seq}`` under
    ``root`` with nnU-Net's own run_training (training, then its validation of the
    fold). The model folder is root/model/Dataset001_{seq}/{trainer}__nnUNetPlans__{configuration}.
    ``seed`` seeds torch, numpy and random first (nnU-Net sets none; with augmentation
    workers or a GPU the run is still not bit-for-bit repeatable).
    Returns the model card (folder, trainer, folds, device, cases, seconds)."""
    use_folders(root, threads)
    import random

    try:
        import torch
        from nnunetv2.run.run_training import run_training
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    with _trainer_lookup():
        for fold in parse_folds(folds):
            run_training(
                dataset_name(seq), configuration, fold, trainer, PLANS, device=torch.device(dev)
            )
    folder = Path(root) / FOLDERS["nnUNet_results"] / dataset_name(seq)
    return {
        "folder": str(folder / f"{trainer}__{PLANS}__{configuration}"),
        "trainer": trainer,
        "configuration": configuration,
        "folds": parse_folds(folds),
        "device": dev,
        "threads": int(threads),
        "cases": exported_cases(Path(root) / FOLDERS["nnUNet_raw"], seq),
        "seed": int(seed),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------- prediction
def model_folder(path) -> Path:
    """The nnU-Net model folder (with plans.json) at ``path``, or the one inside it when
    ``path`` is an nnUNet_results folder holding exactly one trained model."""
    path = Path(path)
    if (path / "plans.json").is_file():
        return path
    found = sorted(p.parent for p in path.glob("Dataset*/*__*__*/plans.json"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise FileNotFoundError(
            f"{path}: {what} nnU-Net v2 model folders (plans.json) here; give the one to use"
        )
    return found[0]


@contextmanager
def _trainer_lookup():
    """nnU-Net's training and prediction find the trainer class with :func:`trainer_class`."""
    from unittest import mock

    with (
        mock.patch("nnunetv2.run.run_training.recursive_find_trainer_class_by_name", trainer_class),
        mock.patch(
            "nnunetv2.inference.predict_from_raw_data.recursive_find_trainer_class_by_name",
            trainer_class,
        ),
    ):
        yield


def load_predictor(model, folds: Iterable, device: str = "auto", threads: int = 1):
    """nnU-Net's predictor for the model folder ``model`` (see :func:`model_folder`),
    the ensemble of ``folds``, with mirroring and Gaussian-weighted sliding windows."""
    try:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err

    torch.set_num_threads(max(1, int(threads)))
    dev = resolve_device(device)
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=dev != "cpu",
        device=torch.device(dev),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    with _trainer_lookup():
        predictor.initialize_from_trained_model_folder(
            str(model_folder(model)),
            use_folds=tuple(parse_folds(folds)),
            checkpoint_name=CHECKPOINT,
        )
    return predictor


def predict_case(predictor, image_path, out_mask, out_membership) -> dict:
    """One case through ``predictor``: mask (uint8) and foreground probability (float32,
    the membership map) on the image's own grid. Returns voxels and volume."""
    try:
        from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    except ImportError as err:
        raise RuntimeError(NNUNET_MISSING) from err

    data, props = SimpleITKIO().read_images([str(image_path)])
    seg, probs = predictor.predict_single_npy_array(data, props, None, None, True)
    image = sitk.ReadImage(str(image_path))
    mask = (np.asarray(seg) > 0).astype(np.uint8)
    member = np.clip(np.asarray(probs)[1:].sum(axis=0), 0, 1).astype(np.float32)
    for arr, path in ((mask, out_mask), (member, out_membership)):
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(image)
        write_image(out, path)
    voxels = int(mask.sum())
    return {"voxels": voxels, "volume_ml": voxels * float(np.prod(image.GetSpacing())) / 1000.0}


def batch_files(folder, case: str) -> tuple[Path, Path]:
    """Mask and membership of ``case`` in a batch's prediction folder (rule
    predict_nnunet writes them; the pseudo-reader "nnunet"'s files)."""
    return Path(folder) / f"{case}_mask.nii.gz", Path(folder) / f"{case}_membership.nii.gz"


def predict_cases(
    cases: Mapping[str, tuple], model, folds, device="auto", threads: int = 1
) -> dict[str, float | None]:
    """Several cases with one predictor (loaded once, and only when some case has an
    image): case -> (image, mask out, membership out). Returns case -> seconds of its
    prediction, None for a case excluded instead. Each case runs as a per-case step
    (:func:`radstudy.casestep.run_case_step`): a marker as its image or a failure
    writes exclusion markers as its two outputs and the other cases go on."""
    from radstudy.casestep import run_case_step

    predictor = None
    if any(marker_reason(image) is None for image, _, _ in cases.values()):
        predictor = load_predictor(model, folds, device, threads)  # a model problem: the job
    seconds = {}
    for case, (image, mask, member) in cases.items():
        t0 = time.perf_counter()
        ok = run_case_step(
            case,
            inputs=[image],
            outputs=[mask, member],
            step=lambda image=image, mask=mask, member=member: predict_case(
                predictor, image, mask, member
            ),
        )
        seconds[case] = time.perf_counter() - t0 if ok else None
        if ok:
            log.info("case %s: predicted in %.1f s", case, seconds[case])
    return seconds


def predict_batch(
    images: Mapping[str, str], model, folds, out_folder, device="auto", threads: int = 1
) -> dict[str, str | None]:
    """Every case of one extraction batch (rule predict_nnunet) into ``out_folder``
    (:func:`batch_files`), by :func:`predict_cases`: case -> None when predicted, else
    the reason it was excluded."""
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    cases = {c: (image, *batch_files(out_folder, c)) for c, image in images.items()}
    seconds = predict_cases(cases, model, folds, device, threads)
    return {c: None if seconds[c] is not None else marker_reason(cases[c][1]) for c in cases}


# ------------------------------------------------------------------- workflow settings
def train_settings(seg: dict) -> dict:
    """What rule train_nnunet reads of the segmentation block."""
    return {
        "configuration": seg["nnunet_configuration"],
        "folds": seg["nnunet_folds"],
        "trainer": seg["nnunet_trainer"],
        "device": seg["nnunet_device"],
    }


def train_gpus(seg: dict) -> int:
    """GPUs the training job asks for (resources gpu; the SLURM executor's --gpus):
    one with nnunet_device cuda, none with cpu or auto (auto uses one where the node
    has it)."""
    return 1 if seg["nnunet_device"] == "cuda" else 0


def predict_device(seg: dict) -> str:
    """Prediction runs per extraction batch, on CPU nodes: cpu when the study says cpu, else a GPU
    where the node has one (auto)."""
    return "cpu" if seg["nnunet_device"] == "cpu" else "auto"
