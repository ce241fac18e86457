"""Faults: a run killed (SIGKILL, the job processes too) while each stage runs, a
second run started on the same folder, and a disk that fills up.

One run of the micro cohort takes all the faults in turn, so the suite pays for about
one run: it is killed while an extraction batch runs (and, before that, a second run
on the same folder is refused by Snakemake's lock), resumed and killed while a
per-center job runs, then a cohort job, then the report; then the disk fills up
under the report, space is freed, and the same command finishes. After each kill,
every file that Snakemake would take as complete (no incomplete marker) is
byte-identical to the uninterrupted run's (``micro_run``), and the files of the jobs
that were running are marked incomplete. The finished run is byte-identical to
``micro_run``, file for file.

The disk fault needs a size-limited folder: a tmpfs (root only; CI runs as root).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import make_workdir, micro_config, run_snakemake, snakemake_command
from .test_reproducibility import COMPARED, WORKDIR_SPECIFIC, differing

pytestmark = pytest.mark.slow

# stage -> the outputs whose jobs the run is killed in: an extraction batch (its case
# processes are forked from the job), a center's tables or predictions, the cohort's
# fits and evaluations, the report
STAGES = {
    "per-case": r"results/features/radiomics/",
    "per-center": r"results/(features/(raw|readers|excluded|harmonized)"
    r"|evaluation/[^/]+/[^/]+/predictions)/",
    "cohort": r"results/(features/combat|selection/|models/|evaluation/)",
    "report": r"results/report/",
}
LOCKED = "Directory cannot be locked"
DISK_FULL = "No space left on device"


def stage_of(path: str) -> str | None:
    return next((s for s, pattern in STAGES.items() if re.match(pattern, path)), None)


def incomplete(wd: Path) -> set[str]:
    """Files Snakemake has marked incomplete: outputs of jobs that started and did not
    finish (.snakemake/incomplete, one file per output, named by its base64 path)."""
    root = wd / ".snakemake" / "incomplete"
    out = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name == "migration_underway":
                continue
            parts = Path(dirpath, name).relative_to(root).parts
            out.add(base64.urlsafe_b64decode("".join(p.lstrip("@") for p in parts)).decode())
    return out


def files(wd: Path) -> dict[str, Path]:
    return {str(p.relative_to(wd)): p for p in sorted((wd / "results").rglob("*")) if p.is_file()}


def taken_as_complete_but_wrong(wd: Path, ref: Path) -> list[str]:
    """Files that Snakemake would take as complete (present, no incomplete marker on
    them or on their output folder) but that are not the uninterrupted run's bytes."""
    marked = incomplete(wd)
    ours, theirs = files(wd), files(ref)
    wrong = []
    for rel, path in ours.items():
        if any(rel == m or rel.startswith(m.rstrip("/") + "/") for m in marked):
            continue
        if rel not in theirs:
            wrong.append(f"{rel} (not in the uninterrupted run)")
        elif rel.endswith(COMPARED) and not rel.startswith(WORKDIR_SPECIFIC):
            same = hashlib.sha256(path.read_bytes()).digest()
            if same != hashlib.sha256(theirs[rel].read_bytes()).digest():
                wrong.append(rel)
    return wrong


def kill_while(wd: Path, stage: str, log: Path, second_run: bool = False) -> dict:
    """Start the run, wait until a job of ``stage`` is running (an output of it marked
    incomplete), SIGKILL Snakemake and every job process, and say what was left.
    ``second_run``: first start the same command again while this run works."""
    seen: dict = {"stage": stage}
    with log.open("w") as out:
        proc = subprocess.Popen(
            snakemake_command(wd),
            cwd=wd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 300
            if second_run:
                while time.time() < deadline and not incomplete(wd) and proc.poll() is None:
                    time.sleep(0.1)
                other = subprocess.run(
                    snakemake_command(wd), cwd=wd, capture_output=True, text=True, timeout=300
                )
                seen["second"] = (other.returncode, other.stdout + other.stderr)
                seen["first_running"] = proc.poll() is None
            running: set[str] = set()
            while time.time() < deadline and proc.poll() is None:
                running = {f for f in incomplete(wd) if stage_of(f) == stage}
                if running:
                    break
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):  # gone already: a failed run
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert running, f"no {stage} job ran; snakemake exited {proc.returncode}: {log.read_text()}"
    seen["running"] = running
    seen["marked"] = running & incomplete(wd)
    return seen


@pytest.fixture(scope="module")
def size_limited(tmp_path_factory):
    """A 64 MB tmpfs (None without root or mount)."""
    path = tmp_path_factory.mktemp("disk")
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None, "needs root to mount a size-limited tmpfs"
        return
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        yield None, f"cannot mount a tmpfs: {proc.stderr.strip()}"
        return
    try:
        yield path, ""
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory, size_limited, micro_cohort, micro_run):
    disk, _ = size_limited
    logs = tmp_path_factory.mktemp("fault_logs")
    wd = make_workdir((disk or tmp_path_factory.mktemp("faults")) / "run", micro_config())
    shutil.copytree(micro_cohort, wd / "data")
    out = {"kills": {}}
    for i, stage in enumerate(STAGES):
        seen = kill_while(wd, stage, logs / f"{i}_{stage}.log", second_run=i == 0)
        seen["wrong"] = taken_as_complete_but_wrong(wd, micro_run)
        out["kills"][stage] = seen
        if i == 0:
            out["lock"] = (seen["second"], seen["first_running"])
            # a killed run leaves its lock behind: the same command is refused until
            # `--unlock` (checked once: each try parses the workflow)
            out["stale_lock"] = run_snakemake(wd, check=False).stderr
        run_snakemake(wd, "--unlock")
    if disk is not None:
        # fill the disk but for 256 kB: the report's figures and page do not fit
        ballast = disk / "ballast"
        with ballast.open("wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, shutil.disk_usage(disk).free - (256 << 10))
        full = run_snakemake(wd, check=False)
        out["disk"] = (full.returncode, full.stdout + full.stderr)
        (logs / "4_full_disk.log").write_text(out["disk"][1])
        out["disk_wrong"] = taken_as_complete_but_wrong(wd, micro_run)
        ballast.unlink()
    out["last"] = run_snakemake(wd)
    out["wd"] = wd
    return out


def test_second_run_on_the_same_folder_is_refused_by_the_lock(faulted):
    (code, text), first_running = faulted["lock"]
    assert code != 0
    assert LOCKED in text and "--unlock" in text
    assert first_running  # the first run went on (and its outputs check out below)
    # a killed run's lock stays until --unlock; the message says so
    assert LOCKED in faulted["stale_lock"] and "--unlock" in faulted["stale_lock"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_leaves_no_partial_file_taken_as_complete(faulted, stage):
    seen = faulted["kills"][stage]
    assert seen["running"]  # killed while a job of this stage ran
    # Snakemake still marks the killed job's outputs incomplete: never taken as done
    # (a job may just have finished as the kill came: then its outputs are checked below)
    assert seen["marked"], seen
    assert seen["wrong"] == []


def test_full_disk_says_so_in_one_line_and_the_same_command_resumes(faulted, size_limited):
    disk, why = size_limited
    if disk is None:
        pytest.skip(why)
    code, text = faulted["disk"]
    assert code != 0
    lines = [line for line in text.splitlines() if DISK_FULL in line]
    assert any(line.startswith("radstudy: render_report: ") for line in lines), text[-3000:]
    assert "Error in rule render_report" in text
    assert "Traceback" not in text, text[-3000:]
    assert faulted["disk_wrong"] == []


def test_resumed_run_is_byte_identical_to_an_uninterrupted_run(faulted, micro_run):
    wd = faulted["wd"]
    assert files(wd).keys() == files(micro_run).keys()  # nothing partial or stray left
    assert differing(wd, micro_run) == []
    assert not incomplete(wd)
