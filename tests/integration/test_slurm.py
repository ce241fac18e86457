"""A real SLURM run: single-node cluster (munge + slurmctld + slurmd), Snakemake's
slurm executor via profiles/slurm, results identical to a local run."""

import os
import re
import shutil
import subprocess

import pytest

from .conftest import REPO, make_workdir, run_snakemake, tiny_config
from .test_reproducibility import checksums

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SCRIPTS = REPO / "tests" / "slurm"
BASE = "/tmp/radstudy-slurm"

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
    return cfg


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (CI runs as root)")
    env = {**os.environ, "SLURM_TEST_BASE": BASE}
    up = subprocess.run(
        ["bash", str(SCRIPTS / "slurm-up.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert up.returncode == 0, up.stderr[-3000:]
    yield
    subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh")], env=env, capture_output=True)


def test_slurm_run_matches_local_run(tmp_path, cluster):
    local = make_workdir(tmp_path / "local", micro_config())
    run_snakemake(local)
    remote = make_workdir(tmp_path / "slurm", micro_config())
    shutil.copytree(local / "data", remote / "data", dirs_exist_ok=True)
    proc = run_snakemake(remote, "--profile", str(REPO / "profiles" / "slurm"), "--jobs", "8")
    submitted = re.findall(r"SLURM jobid (\d+)", proc.stdout + proc.stderr)
    assert len(submitted) >= 5, (proc.stdout + proc.stderr)[-3000:]
    # per-case jobs were grouped: fewer submissions than per-case jobs
    assert (remote / ".snakemake" / "slurm_logs").is_dir()
    a, b = checksums(local), checksums(remote)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert (remote / "results/report/report.html").is_file()
