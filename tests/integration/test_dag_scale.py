"""Registry scale, structurally: a cohort-level job's input list never grows with the
cases, only with the centers, batches and fitted artefacts it needs (issue 22).

Snakemake hashes every job's inputs while it plans, so one cohort job listing every
case's files makes planning cost grow faster than the cohort. Dry runs only (no job
runs): a 40-case and a 400-case sheet, the same 3 centers, planned with every
cohort-level step on (Nyul fit, deep training, segmentation agreement, report).
A job is cohort-level when it has neither a case nor a center wildcard.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO, make_workdir, micro_config, run_snakemake

pytestmark = pytest.mark.slow

SIZES = (40, 400)


def config(batch_size: int) -> dict:
    cfg = micro_config()
    cfg["preprocess"]["normalization"] = "nyul"  # fit_nyul: training images only
    cfg["segmentation"] = {"method": "slic_fcm"}  # agreement of readers + slic
    cfg["deep"] = {"enabled": True, "endpoint": "recurrence", "weights": "train"}
    cfg["models"]["recurrence"]["deep_lr"] = {
        "groups": ["deep"],
        "classifier": {"name": "logistic", "params": {"C": 1.0}},
    }
    cfg["features"]["batch_size"] = batch_size
    return cfg


def planned_inputs(wd: Path) -> list[tuple[str, str, int]]:
    """(rule, wildcards, number of input files) of every job of a dry run."""
    out = run_snakemake(wd, "--dry-run").stdout
    jobs: list[list] = []
    for line in out.splitlines():
        if m := re.match(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$", line):
            jobs.append([m.group(1), "", 0])
        elif (m := re.match(r"^\s+input: (.*)$", line)) and jobs:
            jobs[-1][2] = len(m.group(1).split(", "))
        elif (m := re.match(r"^\s+wildcards: (.*)$", line)) and jobs:
            jobs[-1][1] = m.group(1).strip()
    return [tuple(j) for j in jobs]


def cohort_level(jobs) -> dict[tuple[str, str], int]:
    return {(rule, wc): n for rule, wc, n in jobs if not re.search(r"\b(case|center)=", wc)}


def n_batches(jobs) -> int:
    """Extraction batches (center x batch) of the plan."""
    return len(
        {re.sub(r"seq=\w+,?\s*", "", wc) for rule, wc, _ in jobs if rule == "extract_radiomics"}
    )


@pytest.fixture(scope="module")
def plans(tmp_path_factory, micro_cohort):
    """(batch_size, cases) -> planned jobs of that sheet (40 or 400 rows of the micro
    cohort's 25, repeated with new case ids; the same files, centers and splits)."""
    sheet = pd.read_csv(micro_cohort / "cases.tsv", sep="\t", dtype=str, keep_default_na=False)
    out = {}
    for batch_size in (16, 1000):
        for n in SIZES:
            copies = -(-n // len(sheet))
            rows = pd.concat(
                [sheet.assign(case_id=sheet["case_id"] + f"x{i}") for i in range(copies)]
            ).head(n)
            wd = make_workdir(tmp_path_factory.mktemp(f"dag{n}_{batch_size}"), config(batch_size))
            (wd / "data").mkdir()
            for sub in ("images", "masks"):
                (wd / "data" / sub).symlink_to(micro_cohort / sub)
            rows.to_csv(wd / "data" / "cases.tsv", sep="\t", index=False)
            out[batch_size, n] = planned_inputs(wd)
    return out


def test_every_cohort_step_is_planned(plans):
    rules = {rule for rule, _ in cohort_level(plans[16, 400])}
    assert {
        "fit_nyul",
        "fit_deep",
        "evaluate_segmentation",
        "render_report",
        "fit_combat",
        "compute_icc",
        "collect_exclusions",
        "fit_model",
        "cross_validate_model",
        "evaluate_model",
    } <= rules
    per_batch = {rule for rule, wc, _ in plans[16, 400] if "batch=" in wc}
    assert {"prepare_image", "normalize_image", "segment_slic_fcm"} <= per_batch


def test_no_job_per_case(plans):
    """The per-case stages run per extraction batch: one batch per center (batch_size
    1000) plans the same jobs for 400 cases as for 40, and no job has a case wildcard."""
    small, large = plans[1000, 40], plans[1000, 400]
    assert sorted((r, wc) for r, wc, _ in small) == sorted((r, wc) for r, wc, _ in large)
    assert not [(r, wc) for r, wc, _ in large if "case=" in wc]


def test_cohort_jobs_list_no_more_inputs_for_ten_times_the_cases(plans):
    """One batch per center (batch_size 1000): the same centers and batches, so every
    cohort-level job lists exactly as many inputs for 400 cases as for 40."""
    small, large = cohort_level(plans[1000, 40]), cohort_level(plans[1000, 400])
    assert small.keys() == large.keys()
    grown = {k: (small[k], large[k]) for k in small if large[k] > small[k]}
    assert grown == {}
    # bounded by centers, batches (a center's training and other cases: two each) and
    # artefacts, not cases (the report lists the most: about 40 pieces and tables)
    assert max(large.values()) < 400 // 8


def test_cohort_jobs_grow_with_batches_not_cases(plans):
    """features.batch_size 16: a cohort job gains at most one input per new batch."""
    small, large = cohort_level(plans[16, 40]), cohort_level(plans[16, 400])
    extra = n_batches(plans[16, 400]) - n_batches(plans[16, 40])
    assert extra > 0
    over = {k: (small[k], large[k]) for k in small if large[k] - small[k] > extra}
    assert over == {}
    assert max(large.values()) < 400 // 4  # far below one input per case


def _bench_dag():
    spec = importlib.util.spec_from_file_location("bench_dag", REPO / "bench" / "bench_dag.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_changed_case_reruns_its_batch_and_nothing_fitted(tmp_path, micro_cohort):
    """Precise reruns with per-batch jobs: every planned output stamped as made (as
    bench_dag does), then one case's image changes. A test case reruns its own batch's
    jobs and no fit's piece (training and other cases are batched apart); a training
    case also reruns the pieces of its own batch and the fits."""
    bench = _bench_dag()
    cohort = tmp_path / "cohort"
    shutil.copytree(micro_cohort, cohort, symlinks=True)
    old = time.time() - 3600
    for p in cohort.rglob("*"):
        os.utime(p, (old, old))
    wd = make_workdir(tmp_path / "wd", config(16))
    (wd / "data").symlink_to(cohort)
    bench.create_outputs(wd, run_snakemake(wd, "--dry-run").stdout)
    assert "Nothing to be done" in run_snakemake(wd, "--dry-run").stdout
    sheet = pd.read_csv(cohort / "cases.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = sheet.set_index("case_id")
    fits = {"measure_nyul", "fit_nyul", "crop_deep", "fit_deep"}
    for split in ("test", "train"):
        case = sheet.loc[(sheet["split"] == split) & (sheet["center"] == "A"), "case_id"].iloc[0]
        image = cohort / rows.loc[case, "image_T2"]
        os.utime(image)  # the case's image changed
        jobs = planned_inputs(wd)
        os.utime(image, (old, old))
        # a training case's change refits the Nyul landmarks: every batch renormalises
        rules = ("prepare_image", "normalize_image") if split == "test" else ("prepare_image",)
        per_batch = {(r, wc) for r, wc, _ in jobs if r in rules}
        batches = {re.search(r"batch=(\d+)", wc).group(1) for _, wc in per_batch}
        assert len(batches) == 1 and all("center=A" in wc for _, wc in per_batch), per_batch
        planned = {r for r, _, _ in jobs}
        if split == "test":
            assert not planned & fits, planned
        else:
            assert {"measure_nyul", "fit_nyul", "fit_deep"} <= planned, planned
