"""nnU-Net v2 trained inside the study (rules/nnunet.smk), end to end on the micro cohort.

One tiny training (2d configuration, nnUNetTrainer_1epoch, fold ``all``, CPU) on the
training cases only, every case predicted into the pseudo-reader ``nnunet`` (mask and
probability map), the agreement tables with nnunet beside the readers (with SLIC + FCM
too: the hepatoblastoma_segmentation preset's run in test_presets), the
external center's feature table from the nnunet masks, and a new center that is only
predicted with the frozen model. Needs the optional extra (make venv-nnunet).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from .conftest import MICRO_SPEC, case_file, make_workdir, micro_config, run_snakemake

pytestmark = pytest.mark.slow
pytest.importorskip(
    "nnunetv2", reason="nnunetv2 is not installed (optional extra: make venv-nnunet)"
)

SEQ = "T2"
# the micro cohort, smaller still (8 training cases): nnU-Net's 2d batch is 5 % of the
# training voxels, so an epoch (250 iterations) costs in proportion to the cohort
SPEC = {
    **MICRO_SPEC,
    "fov_mm": 28.0,
    "centers": [{**c, "n": n} for c, n in zip(MICRO_SPEC["centers"], (5, 5, 2), strict=True)],
}
NNUNET = {
    "method": "nnunet",  # beside SLIC + FCM: the hepatoblastoma_segmentation preset's run
    "nnunet_configuration": "2d",
    "nnunet_folds": ["all"],
    "nnunet_trainer": "nnUNetTrainer_1epoch",
    "nnunet_device": "cpu",
}
TARGETS = [
    f"results/segmentation/{SEQ}/dice_pairwise.tsv",
    "results/features/raw/C.parquet",  # the external center, features of nnunet masks
]


def planned_rules(proc) -> set[str]:
    """Rule names in a dry run's job-stats table."""
    out = proc.stdout + proc.stderr
    table = out.split("Job stats:")[1].split("total")[0] if "Job stats:" in out else ""
    return set(re.findall(r"^(\w+)\s+\d+\s*$", table, flags=re.M))


@pytest.fixture(scope="module")
def nnunet_run(tmp_path_factory):
    cfg = micro_config()
    cfg["synthetic"]["spec"] = SPEC
    cfg["segmentation"] = {**cfg.get("segmentation", {}), **NNUNET}
    cfg["features"]["model_reader"] = "nnunet"
    wd = make_workdir(tmp_path_factory.mktemp("nnunet"), cfg)
    run_snakemake(wd, *TARGETS)
    return wd


def _sheet(wd):
    return pd.read_csv(wd / "data/cases.tsv", sep="\t", dtype=str)


def test_trains_on_the_training_cases_only(nnunet_run):
    """Fit discipline: the exported dataset (and so the model) holds exactly the
    training-split cases; no test or external case reaches it."""
    sheet = _sheet(nnunet_run)
    train = set(sheet.loc[sheet["split"] == "train", "case_id"])
    held_out = set(sheet["case_id"]) - train
    assert train and held_out and set(sheet.loc[sheet["center"] == "C", "case_id"]) <= held_out
    raw = nnunet_run / f"results/nnunet/{SEQ}/raw/Dataset001_{SEQ}"
    images = {p.name.removesuffix("_0000.nii.gz") for p in (raw / "imagesTr").iterdir()}
    labels = {p.name.removesuffix(".nii.gz") for p in (raw / "labelsTr").iterdir()}
    assert images == labels == train
    assert not images & held_out
    dataset = json.loads((raw / "dataset.json").read_text())
    assert dataset["numTraining"] == len(train) and dataset["labels"] == {
        "background": 0,
        "tumor": 1,
    }
    card = json.loads((nnunet_run / f"results/nnunet/{SEQ}/model.json").read_text())
    assert set(card["cases"]) == train and card["trainer"] == "nnUNetTrainer_1epoch"
    # the label is the reference reader's (R1) mask on the prepared grid
    case = sorted(train)[0]
    r1 = sitk.GetArrayFromImage(
        sitk.ReadImage(str(case_file(nnunet_run, case, SEQ, "mask_R1.nii.gz")))
    )
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / f"{case}.nii.gz")))
    assert np.array_equal(label, (r1 > 0).astype(np.uint8))


def test_model_and_predictions_for_every_case(nnunet_run):
    folder = nnunet_run / f"results/nnunet/{SEQ}/model/Dataset001_{SEQ}"
    model = folder / "nnUNetTrainer_1epoch__nnUNetPlans__2d"
    assert (model / "plans.json").is_file() and (model / "fold_all/checkpoint_final.pth").is_file()
    for case in _sheet(nnunet_run)["case_id"]:
        image = sitk.ReadImage(str(case_file(nnunet_run, case, SEQ, "prepared.nii.gz")))
        mask = sitk.ReadImage(str(case_file(nnunet_run, case, SEQ, "mask_nnunet.nii.gz")))
        member = sitk.GetArrayFromImage(
            sitk.ReadImage(str(case_file(nnunet_run, case, SEQ, "membership_nnunet.nii.gz")))
        )
        assert mask.GetSize() == image.GetSize()
        assert np.allclose(mask.GetSpacing(), image.GetSpacing())
        m = sitk.GetArrayFromImage(mask)
        assert set(np.unique(m)) <= {0, 1}
        assert member.dtype == np.float32 and 0 <= member.min() and member.max() <= 1
        # the hard mask is where the foreground probability wins
        assert ((member > 0.5) == (m > 0)).mean() > 0.99


def test_agreement_tables_show_readers_and_nnunet(nnunet_run):
    out = nnunet_run / f"results/segmentation/{SEQ}"
    matrix = pd.read_csv(out / "dice_matrix.tsv", sep="\t").set_index("name")
    assert set(matrix.index) == {"R1", "R2", "nnunet"}  # a consensus needs 3+ readers
    entropy = pd.read_csv(out / "entropy.tsv", sep="\t")
    assert set(entropy["method"]) == {"nnunet"}
    # the membership map's entropy (the core, eroded 10 px, is empty on these tiny tumors)
    assert entropy["entropy_rim"].between(0, 1).all()
    assert len(entropy) == len(_sheet(nnunet_run)) and entropy["entropy_rim"].gt(0).all()


def test_nnunet_masks_feed_the_features(nnunet_run):
    table = pd.read_parquet(nnunet_run / "results/features/raw/C.parquet")
    sheet = _sheet(nnunet_run)
    assert len(table) == (sheet["center"] == "C").sum()
    assert any(c.startswith(f"{SEQ}__original_") for c in table.columns)


def test_new_center_is_predicted_with_the_frozen_model(nnunet_run):
    """A new (external) center adds only its own per-batch jobs: nnU-Net predicts its
    cases and nothing is exported, planned or trained again."""
    sheet_path = nnunet_run / "data/cases.tsv"
    original = sheet_path.read_text()
    sheet = _sheet(nnunet_run)
    new = sheet[sheet["center"] == "C"].copy()
    new["case_id"] = new["case_id"].str.replace("C", "D", regex=False)
    new["center"] = "D"
    try:
        pd.concat([sheet, new]).to_csv(sheet_path, sep="\t", index=False)
        # what a new center can change for the training jobs: their inputs (the list
        # of training cases) and the files' times; the params trigger is left out, as
        # each rule's params hold a hash of the package's code (an edit to the package
        # between the run and this dry run would replan every job)
        triggers = ("--rerun-triggers", "mtime", "input")
        dry = run_snakemake(nnunet_run, *TARGETS, "--dry-run", "--quiet", "rules", *triggers)
        rules = planned_rules(dry)
        assert {"prepare_image", "predict_nnunet"} <= rules, dry.stdout[-3000:]
        assert not rules & {"export_nnunet_dataset", "plan_nnunet", "train_nnunet"}, rules
        jobs = run_snakemake(nnunet_run, *TARGETS, "--dry-run", *triggers).stdout
        batches = set(re.findall(r"results/nnunet/T2/predictions/(\w+)/batch\d+", jobs))
        assert batches == {"D"}  # the new center's batch only: the old ones stay
        assert set(re.findall(r"results/cases/T2/(\w+)/batch\d+/prepared", jobs)) == {"D"}
    finally:
        sheet_path.write_text(original)
