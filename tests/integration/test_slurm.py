"""A real SLURM run: single-node cluster (munge + slurmctld + slurmd), Snakemake's
slurm executor via profiles/slurm, results identical to a local run."""

import os
import re
import subprocess
import time

import pytest

from .conftest import REPO, make_workdir, micro_config, run_snakemake
from .test_reproducibility import differing

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SCRIPTS = REPO / "tests" / "slurm"
BASE = "/tmp/radstudy-slurm"


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
    # the stopped cluster must not slow later snakemake starts: the SLURM plugin runs
    # `scontrol show config` on each (9 s of retries against a stopped controller)
    t0 = time.monotonic()
    subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=30)
    assert time.monotonic() - t0 < 3, "scontrol still waits for the stopped controller"


def test_slurm_run_matches_local_run(tmp_path, cluster, micro_cohort, micro_run):
    local = micro_run
    remote = make_workdir(tmp_path / "slurm", micro_config(), micro_cohort)
    proc = run_snakemake(remote, "--profile", str(REPO / "profiles" / "slurm"), "--jobs", "8")
    submitted = re.findall(r"SLURM jobid (\d+)", proc.stdout + proc.stderr)
    assert len(submitted) >= 5, (proc.stdout + proc.stderr)[-3000:]
    # per-case jobs were grouped: fewer submissions than jobs (one rule log per job)
    logs = [p.relative_to(remote / "logs") for p in (remote / "logs").rglob("*.log")]
    job_logs = [p for p in logs if p.parts[0] != "slurm"]
    assert len(set(submitted)) < len(job_logs)
    # the sbatch logs are kept where the profile puts them
    assert any((remote / "logs" / "slurm").rglob("*.log"))
    assert differing(local, remote) == []
    assert (remote / "results/report/report.html").is_file()
