"""Run the real workflow (snakemake CLI) on tiny synthetic cohorts in temp dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

# A tiny cohort: 3 centers (2 training, 1 external), 2 sequences, small FOV.
TINY_SPEC = {
    "seed": 7,
    "sequences": ["T2"],
    "readers": ["R1", "R2", "R1r"],
    "fov_mm": 40.0,
    "test_fraction": 0.25,
    "centers": [
        {
            "name": "A",
            "n": 16,
            "role": "train",
            "spacing": [0.8, 0.8, 3.0],
            "field_strength": 1.5,
            "gain": 1.0,
            "offset": 0.0,
            "noise": 0.08,
            "bias": 0.25,
        },
        {
            "name": "B",
            "n": 16,
            "role": "train",
            "spacing": [1.5, 1.5, 1.5],
            "field_strength": 3.0,
            "gain": 1.6,
            "offset": 40.0,
            "noise": 0.04,
            "bias": 0.15,
        },
        {
            "name": "C",
            "n": 8,
            "role": "external",
            "spacing": [1.2, 1.2, 2.0],
            "field_strength": 3.0,
            "gain": 0.7,
            "offset": -20.0,
            "noise": 0.05,
            "bias": 0.2,
        },
    ],
}


def tiny_config(**overrides) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["cohort"]["sheet"] = "data/cases.tsv"
    cfg["synthetic"] = {"enabled": True, "spec": TINY_SPEC}
    cfg["cohort"]["sequences"] = ["T2"]
    cfg["cohort"]["readers"] = ["R1", "R2", "R1r"]
    cfg["evaluation"]["bootstrap"] = 200
    # deep features have their own workflow test (test_deep_workflow): off here
    cfg["deep"] = {"enabled": False}
    for name in ("deep_lr", "deep_radiomics_clinical_lr"):
        cfg["models"]["recurrence"].pop(name, None)
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The real Snakemake CLI on the repository's Snakefile in ``workdir`` (2 cores)."""
    return [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]


PREDICTED = {"mask_nnunet.nii.gz": "mask", "membership_nnunet.nii.gz": "membership"}


def case_file(workdir: Path, case: str, seq: str, name: str) -> Path:
    """One case's file in a run (rules/common.smk case_file: the per-case stages write
    one folder per extraction batch, a subfolder per case; nnU-Net's predictions sit in
    its batch folders as {case}_mask.nii.gz)."""
    if name in PREDICTED:
        pattern = f"results/nnunet/{seq}/predictions/*/batch*/{case}_{PREDICTED[name]}.nii.gz"
    else:
        pattern = f"results/cases/{seq}/*/batch*/*/{case}/{name}"
    hits = sorted(workdir.glob(pattern))
    assert len(hits) <= 1, hits
    return hits[0] if hits else workdir / f"missing/{case}/{seq}/{name}"


def case_folder(workdir: Path, case: str, seq: str, stage: str = "prepared") -> Path:
    """The folder of one case's files of one stage (prepared, slic, normalised)."""
    hits = sorted(workdir.glob(f"results/cases/{seq}/*/batch*/{stage}/{case}"))
    assert len(hits) == 1, (case, seq, stage, hits)
    return hits[0]


def run_snakemake(workdir: Path, *args: str, check: bool = True, env=None):
    """Run :func:`snakemake_command` and wait for it."""
    cmd = snakemake_command(workdir, *args)
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def make_workdir(path: Path, cfg: dict, cohort_from: Path | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if cohort_from is not None:
        shutil.copytree(cohort_from, path / "data")
    return path


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """The tiny synthetic cohort, generated once per session."""
    from radstudy.synth import generate_cohort

    out = tmp_path_factory.mktemp("cohort") / "data"
    generate_cohort(out, TINY_SPEC)
    return out


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, tiny_cohort) -> Path:
    """One complete run of the default pipeline on the tiny cohort (shared by tests)."""
    wd = make_workdir(tmp_path_factory.mktemp("run"), tiny_config(), tiny_cohort)
    run_snakemake(wd)
    return wd


# An even smaller cohort for the runs that only check mechanics (SLURM, resume, bad input).
MICRO_SPEC = {
    "seed": 11,
    "sequences": ["T2"],
    "readers": ["R1", "R2"],
    "fov_mm": 36.0,
    "test_fraction": 0.25,
    "centers": [
        {
            "name": "A",
            "n": 10,
            "role": "train",
            "spacing": [1.0, 1.0, 2.0],
            "field_strength": 1.5,
            "gain": 1.0,
            "offset": 0.0,
            "noise": 0.06,
            "bias": 0.2,
        },
        {
            "name": "B",
            "n": 10,
            "role": "train",
            "spacing": [1.5, 1.5, 1.5],
            "field_strength": 3.0,
            "gain": 1.5,
            "offset": 30.0,
            "noise": 0.04,
            "bias": 0.1,
        },
        {
            "name": "C",
            "n": 5,
            "role": "external",
            "spacing": [1.2, 1.2, 2.0],
            "field_strength": 3.0,
            "gain": 0.8,
            "offset": -10.0,
            "noise": 0.05,
            "bias": 0.15,
        },
    ],
}


def micro_config() -> dict:
    cfg = tiny_config()
    cfg["synthetic"]["spec"] = MICRO_SPEC
    cfg["cohort"]["readers"] = ["R1", "R2"]
    cfg["cohort"]["repeats"] = {}
    cfg["evaluation"]["cv"] = {"n_splits": 3, "n_repeats": 1}
    # mechanics only: original-image features (demo_run runs the default full filter set)
    cfg["features"]["params"] = "mri_fast.yaml"
    # mechanics only (SLURM, resume, incremental, determinism): the cheapest statistics
    cfg["evaluation"].update({"bootstrap": 100, "loco": False, "shuffled_null": False})
    cfg["models"]["recurrence"].pop("clinical_radiomics_lr", None)
    return cfg


@pytest.fixture(scope="session")
def micro_cohort(tmp_path_factory) -> Path:
    from radstudy.synth import generate_cohort

    out = tmp_path_factory.mktemp("micro") / "data"
    generate_cohort(out, MICRO_SPEC)
    return out


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, micro_cohort) -> Path:
    """One uninterrupted local run on the micro cohort (reference for SLURM and resume)."""
    wd = make_workdir(tmp_path_factory.mktemp("microrun"), micro_config(), micro_cohort)
    run_snakemake(wd)
    return wd
