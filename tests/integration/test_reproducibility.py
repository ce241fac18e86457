"""Incremental centers, determinism (1 vs 2 cores), and resume after kill -9."""

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO, SNAKEMAKE, make_workdir, micro_config, run_snakemake

pytestmark = pytest.mark.slow

COMPARED = (".tsv", ".parquet", ".json", ".joblib", ".nii.gz", ".txt", ".html")


def checksums(wd: Path, under: str = "results") -> dict[str, str]:
    out = {}
    for p in sorted((wd / under).rglob("*")):
        if p.is_file() and p.name.endswith(COMPARED):
            out[str(p.relative_to(wd))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# the validated sheets record absolute input paths, which differ between workdirs
WORKDIR_SPECIFIC = ("results/cohort/cases.tsv", "results/cohort/centers/")


def differing(wd_a: Path, wd_b: Path) -> list[str]:
    """Outputs whose bytes differ between two workdirs (asserting the same file set)."""
    a, b = checksums(wd_a), checksums(wd_b)
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:10]
    return [k for k in a if a[k] != b[k] and not k.startswith(WORKDIR_SPECIFIC)]


def planned_jobs(wd: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry-run would execute."""
    out = run_snakemake(wd, "--dry-run").stdout
    jobs, rule = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            jobs.append((rule, ""))
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule:
            jobs[-1] = (rule, m.group(1))
    return jobs


@pytest.fixture(scope="module")
def incremental(tmp_path_factory, micro_cohort):
    """A run on centers A+B (1 core), then center C added to the sheet."""
    wd = make_workdir(tmp_path_factory.mktemp("incr"), micro_config(), micro_cohort)
    sheet = pd.read_csv(wd / "data/cases.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet[sheet["center"] != "C"].to_csv(wd / "data/cases.tsv", sep="\t", index=False)
    run_snakemake(wd, "--cores", "1")
    before = checksums(wd)
    mtimes = {k: (wd / k).stat().st_mtime_ns for k in before}
    sheet.to_csv(wd / "data/cases.tsv", sep="\t", index=False)  # center C arrives
    jobs = planned_jobs(wd)
    run_snakemake(wd)
    return wd, before, mtimes, jobs, set(sheet.loc[sheet["center"] == "C", "case_id"])


def test_new_center_runs_only_its_own_jobs(incremental):
    _, _, _, jobs, new_cases = incremental
    per_case = {"prepare_image", "normalize_image", "extract_radiomics"}
    for rule, wc in jobs:
        if rule in per_case:
            case = re.search(r"case=([^,]+)", wc).group(1)
            assert case in new_cases, f"{rule} reruns old case {case}"
        elif rule in ("assemble_center", "harmonize_center", "predict_center"):
            assert "center=C" in wc, f"{rule} reruns {wc}"
        else:
            assert rule in {
                "evaluate_model",
                "evaluate_segmentation",
                "collect_exclusions",
                "render_report",
                "all",
            }, rule
    assert {r for r, _ in jobs} >= {"harmonize_center", "predict_center", "render_report"}


def test_old_outputs_stay_byte_identical(incremental):
    wd, before, mtimes, _, _ = incremental
    after = checksums(wd)
    old = [
        k
        for k in before
        if not k.startswith(
            (
                "results/report",
                "results/evaluation/",
                "results/segmentation/",
                "results/cohort/cases.tsv",
                "results/cohort/excluded.tsv",
            )
        )
    ]
    assert old, "nothing to compare"
    changed = [k for k in old if after[k] != before[k] or (wd / k).stat().st_mtime_ns != mtimes[k]]
    assert changed == []
    for key in (
        "results/features/combat.joblib",
        "results/models/recurrence/radiomics_lr/model.joblib",
        "results/features/raw/A.parquet",
        "results/features/harmonized/B.parquet",
    ):
        assert key in old
    assert "results/features/harmonized/C.parquet" in after


def test_same_config_same_bytes_any_core_count(incremental, micro_run):
    """Incremental run (1 core, then 2) and the one-shot run (2 cores) agree byte for byte."""
    assert differing(incremental[0], micro_run) == []


def test_resume_after_kill_gives_same_bytes(tmp_path, micro_cohort, micro_run):
    wd = make_workdir(tmp_path / "resume", micro_config(), micro_cohort)
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--configfile",
        str(wd / "config.yaml"),
        "--cores",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while (
        time.time() < deadline
        and len(list((wd / "results").glob("cases/*/*/features_R1.parquet"))) < 8
    ):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its running jobs die mid-way
    proc.wait()
    assert not (wd / "results/report/report.html").exists()
    run_snakemake(wd, "--unlock")
    run_snakemake(wd, "--rerun-incomplete")
    assert differing(wd, micro_run) == []


def test_bad_case_is_excluded_and_others_finish(tmp_path, micro_cohort):
    wd = make_workdir(tmp_path / "bad", micro_config(), micro_cohort)
    sheet = pd.read_csv(wd / "data/cases.tsv", sep="\t", dtype=str, keep_default_na=False)
    (wd / "data/broken.nii.gz").write_bytes(b"not an image")
    sheet.loc[sheet["case_id"] == "A002", "image_T2"] = "broken.nii.gz"
    empty = sheet.loc[sheet["case_id"] == "B003", "mask_R1"].iloc[0]
    import SimpleITK as sitk

    m = sitk.ReadImage(str(wd / "data" / empty))
    sitk.WriteImage(m * 0, str(wd / "data" / empty))
    sheet.to_csv(wd / "data/cases.tsv", sep="\t", index=False)
    run_snakemake(wd)
    ex = pd.read_csv(wd / "results/cohort/excluded.tsv", sep="\t").set_index("case_id")
    assert "cannot read image" in ex.loc["A002", "reason"]
    assert "broken.nii.gz" in ex.loc["A002", "reason"]
    assert "mask is empty" in ex.loc["B003", "reason"]
    raw = pd.read_parquet(wd / "results/features/raw/A.parquet")
    assert "A002" not in raw.index and len(raw) >= 8
    assert (wd / "results/report/report.html").is_file()
