"""bench/bench_presets.py: per-job durations from a Snakemake log, summed per rule."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_presets.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_presets", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_presets"] = mod  # dataclasses look the module up
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("bench_presets", None)


# Written by hand in the format of a real Snakemake 9 log (--cores 2): two jobs side
# by side, a job starting before another finishes, a failed job, a job still running.
LOG = """\
Assuming unrestricted shared filesystem usage.
Building DAG of jobs...
Provided cores: 2
Job stats:
job                count
---------------  -------
prepare_image          2
extract_radiomics      1
cross_validate_model   1
fit_model              1
all                    1
total                  6

Select jobs to execute...
Execute 2 jobs...
[Thu Dec  3 09:33:58 2026]
localrule prepare_image:
    input: data/images/A001_T2.nii.gz, data/masks/A001_R1.nii.gz
    output: results/cases/A001/T2/prepared.nii.gz
    log: logs/prepare_image/A001_T2.log
    jobid: 18
    benchmark: benchmarks/prepare_image/A001_T2.tsv
    reason: Missing output files: results/cases/A001/T2/prepared.nii.gz
    wildcards: case=A001, seq=T2
    resources: tmpdir=/tmp, mem_mb=2000, runtime=20
Shell command: None
[Thu Dec  3 09:33:58 2026]
localrule prepare_image:
    input: data/images/B001_T2.nii.gz, data/masks/B001_R1.nii.gz
    output: results/cases/B001/T2/prepared.nii.gz
    jobid: 41
    wildcards: case=B001, seq=T2
    resources: tmpdir=/tmp
Shell command: None
[Thu Dec  3 09:34:01 2026]
Finished jobid: 18 (Rule: prepare_image)
1 of 6 steps (17%) done
Select jobs to execute...
Execute 1 jobs...
[Thu Dec  3 09:34:01 2026]
rule extract_radiomics:
    input: results/cases/A001/T2/prepared.nii.gz
    output: results/features/radiomics/T2/A/batch001.parquet
    jobid: 7
    reason: Missing output files: results/features/radiomics/T2/A/batch001.parquet
    wildcards: seq=T2, center=A, batch=001
    threads: 2
    resources: tmpdir=/tmp
[Thu Dec  3 09:34:05 2026]
Finished jobid: 41 (Rule: prepare_image)
2 of 6 steps (33%) done
[Thu Dec  3 09:34:21 2026]
Finished jobid: 7 (Rule: extract_radiomics)
Removing temporary output results/tmp/A.parquet.
3 of 6 steps (50%) done
Select jobs to execute...
Execute 2 jobs...
[Thu Dec  3 09:34:21 2026]
localrule cross_validate_model:
    input: results/features/raw/A.parquet
    output: results/evaluation/high_risk/mlr/cv.tsv
    jobid: 3
    wildcards: endpoint=high_risk, model=mlr
    resources: tmpdir=/tmp
Shell command: None
[Thu Dec  3 09:34:22 2026]
localrule fit_model:
    input: results/features/raw/A.parquet
    output: results/models/high_risk/mlr/model.joblib
    jobid: 4
    wildcards: endpoint=high_risk, model=mlr
    resources: tmpdir=/tmp
Shell command: None
RuleException:
CalledProcessError in file "/work/main/rules/model.smk", line 59:
Command 'set -euo pipefail;  python3 cross_validate_model.py' returned non-zero exit status 1.
[Thu Dec  3 09:34:30 2026]
Error in rule cross_validate_model:
    message: None
    jobid: 3
    input: results/features/raw/A.parquet
    output: results/evaluation/high_risk/mlr/cv.tsv
    log: logs/cross_validate_model/high_risk_mlr.log (check log file(s) for error details)
Exiting because a job execution failed. Look above for error messages
"""


def test_parse_log_durations_rules_and_wildcards(bench):
    jobs = {j.jobid: j for j in bench.parse_log(LOG)}
    assert sorted(jobs) == [3, 4, 7, 18, 41]
    assert [j.jobid for j in bench.parse_log(LOG)] == [18, 41, 7, 3, 4]  # start order
    assert (jobs[18].rule, jobs[18].seconds, jobs[18].wildcards) == ("prepare_image", 3, "case=A001, seq=T2")  # fmt: skip
    assert (jobs[41].rule, jobs[41].seconds) == ("prepare_image", 7)
    assert (jobs[7].rule, jobs[7].seconds) == ("extract_radiomics", 20)  # "rule", not "localrule"
    assert jobs[7].wildcards == "seq=T2, center=A, batch=001"
    assert jobs[3].failed and jobs[3].seconds == 9  # failed: until the error
    assert not jobs[4].failed and jobs[4].end is None and math.isnan(jobs[4].seconds)


def test_by_rule_sums_finished_jobs_only(bench):
    rows = bench.by_rule(bench.parse_log(LOG))
    assert [r["rule"] for r in rows] == ["extract_radiomics", "prepare_image"]
    ext, prep = rows
    assert (ext["jobs"], ext["seconds"], ext["longest"]) == (1, 20, 20)
    assert (prep["jobs"], prep["seconds"], prep["longest"], prep["longest_jobid"]) == (2, 10, 7, 41)
    assert prep["longest_wildcards"] == "case=B001, seq=T2"
    assert ext["share"] == pytest.approx(20 / 30) and prep["share"] == pytest.approx(10 / 30)


def test_finished_line_of_another_rule_or_unknown_job_is_ignored(bench):
    text = LOG + "[Thu Dec  3 09:35:00 2026]\nFinished jobid: 4 (Rule: all)\nFinished jobid: 99\n"
    jobs = {j.jobid: j for j in bench.parse_log(text)}
    assert jobs[4].end is None and 99 not in jobs


def test_rule_rows_list_unfinished_jobs(bench):
    jobs = bench.parse_log(LOG)
    r = {"name": "x", "run": 40.0, "jobs": jobs, "rules": bench.by_rule(jobs)}
    text = "\n".join(bench.rule_rows(r))
    assert "30 job-seconds in 40.0 s" in text
    assert "| extract_radiomics | 1 | 20 s | 66.7 % | 20 s (seq=T2, center=A, batch=001) |" in text
    assert "cross_validate_model job 3 (endpoint=high_risk, model=mlr) failed after 9 s" in text
    assert "fit_model job 4 (endpoint=high_risk, model=mlr) never ended" in text


def test_write_section_replaces_in_place_and_keeps_the_rest(bench, tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text(
        "# radstudy benchmarks\n\n## A (2026-01-01)\n\na\n\n"
        f"{bench.TITLE} (2026-01-02)\n\nold\n\n## B\n\nb\n"
    )
    bench.write_section(out, f"{bench.TITLE} (2026-12-03)\n\nnew\n")
    text = out.read_text()
    assert text == (
        "# radstudy benchmarks\n\n## A (2026-01-01)\n\na\n\n"
        f"{bench.TITLE} (2026-12-03)\n\nnew\n\n## B\n\nb\n"
    )
    bench.write_section(tmp_path / "new.md", f"{bench.TITLE}\n\nx")
    assert (tmp_path / "new.md").read_text() == f"# radstudy benchmarks\n\n{bench.TITLE}\n\nx\n"
