"""A study config means exactly what it says, reruns are precise, and the workflow runs
as a Snakemake module from a user's own project (real Snakemake runs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from radstudy.config import code_files

from .conftest import REPO, SNAKEMAKE, micro_config, run_snakemake

pytestmark = pytest.mark.slow


def planned(proc) -> set[str]:
    """Rule names a `--dry-run --quiet rules` plans (its job-stats table)."""
    out = proc.stdout + proc.stderr
    table = out.split("Job stats:")[1].split("total")[0] if "Job stats:" in out else ""
    return set(re.findall(r"^(\w+)\s+\d+\s*$", table, flags=re.M))


@contextmanager
def edited_config(wd: Path, *path_value):
    """The finished run's config with some keys changed, restored afterwards (the tests
    only dry-run: the shared run's results are never touched)."""
    path = wd / "config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    for dotted, value in path_value:
        node = cfg
        *keys, last = dotted.split(".")
        for k in keys:
            node = node[k]
        node[last] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


def test_nothing_to_do_after_a_run(micro_run):
    assert planned(run_snakemake(micro_run, "--dry-run", "--quiet", "rules")) == set()


def test_report_text_edit_reruns_only_the_report(micro_run):
    with edited_config(micro_run, ("study.description", "A changed description")):
        got = planned(run_snakemake(micro_run, "--dry-run", "--quiet", "rules"))
    assert got == {"render_report", "all"}


def test_one_model_edit_reruns_only_that_model(micro_run):
    wd = micro_run
    with edited_config(wd, ("models.recurrence.radiomics_lr.classifier.params", {"C": 0.3})):
        proc = run_snakemake(wd, "--dry-run")
        got = planned(run_snakemake(wd, "--dry-run", "--quiet", "rules"))
    assert got == {
        "fit_model",
        "cross_validate_model",
        "predict_center",
        "evaluate_model",
        "render_report",
        "all",
    }
    # every planned model job is that model's, none of the other models'
    jobs = re.findall(r"wildcards: (.*)", proc.stdout)
    assert jobs and all("model=radiomics_lr" in j for j in jobs if "model=" in j)
    assert all("endpoint=recurrence" in j for j in jobs if "endpoint=" in j)


def _repo_copy(dst: Path) -> Path:
    for name in ("Snakefile", "config.yaml", "config.schema.yaml"):
        shutil.copy2(REPO / name, dst / name)
    for name in ("rules", "scripts", "profiles", "envs"):
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_a_changed_module_reruns_the_jobs_it_produced(tmp_path, micro_run):
    """Results made by a changed package module are stale (a plain run reruns them, a
    dry run names the reason); jobs whose scripts never run that module are not."""
    wd = micro_run
    (tmp_path / "repo").mkdir()
    repo = _repo_copy(tmp_path / "repo")

    def dry(*args):
        cmd = [str(SNAKEMAKE), "--snakefile", str(repo / "Snakefile"), "--directory", str(wd)]
        cmd += ["--configfile", str(wd / "config.yaml"), "--cores", "2", *args]
        proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    assert planned(dry("--dry-run", "--quiet", "rules")) == set()  # same code, same results
    module = repo / "scripts" / "radstudy" / "survival.py"
    module.write_text(module.read_text() + "\n# a change to the survival code\n")
    users = {
        p.stem
        for p in (repo / "scripts").glob("*.py")
        if module in code_files(p, repo / "scripts" / "radstudy")
    }
    assert "fit_model" in users and "extract_radiomics" not in users
    got = planned(dry("--dry-run", "--quiet", "rules"))
    assert {"fit_model", "cross_validate_model", "render_report"} <= got
    assert not got & {"prepare_image", "normalize_image", "extract_radiomics"}
    # the reason Snakemake gives: the code stamp param of those rules changed
    reasons = dry("--dry-run").stdout.split("params have changed since last execution:")[1]
    changed = set(reasons.split("\n")[1].replace(",", " ").split())
    assert changed and changed <= users


def test_own_config_never_inherits_the_demo(tmp_path, micro_cohort):
    """--configfile my_study.yaml means that file plus the schema's defaults, even run
    from the repository root where the demo config.yaml lies."""
    cfg = {
        "study": {"name": "own"},
        "cohort": {
            "sheet": str(tmp_path / "data" / "cases.tsv"),
            "sequences": ["T2"],
            "readers": ["R1"],
            "reference_reader": "R1",
        },
        "endpoints": {"outcome": {"type": "binary", "column": "label"}},
        "models": {
            "outcome": {"only_svm": {"groups": ["radiomics"], "classifier": {"name": "svm"}}}
        },
    }
    shutil.copytree(micro_cohort, tmp_path / "data")
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [str(SNAKEMAKE), "--configfile", str(own), "--dry-run", "--printshellcmds", "--cores", "2",
         "--directory", str(tmp_path / "wd")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "only_svm" in out
    for demo in ("radiomics_lr", "deep_lr", "recurrence", "efs", "radiomics_cox", "fit_deep"):
        assert demo not in out, demo
    assert "mask_R2" not in out  # the demo's readers are not planned either


def test_workflow_runs_as_a_module_of_a_users_project(tmp_path, micro_cohort):
    """The snakemake-workflows convention: a project folder outside the repository with
    its own config/config.yaml and a Snakefile that imports radstudy as a module. Job
    scripts import this workflow's radstudy even when another one comes first on
    PYTHONPATH (a decoy that fails on import)."""
    proj = tmp_path / "project"
    (proj / "config").mkdir(parents=True)
    shutil.copytree(micro_cohort, proj / "data")
    cfg = micro_config()
    cfg["models"]["recurrence"] = {k: cfg["models"]["recurrence"][k] for k in ["radiomics_lr"]}
    cfg["models"].pop("efs")
    cfg["endpoints"].pop("efs")  # an endpoint without models would get the searched model
    (proj / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (proj / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        "module radstudy:\n"
        f'    snakefile: "{REPO / "Snakefile"}"\n'
        "    config: config\n\n\n"
        "use rule * from radstudy\n"
    )
    decoy = tmp_path / "decoy" / "radstudy"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('decoy radstudy imported')\n")
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", "all"], cwd=proj, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (proj / "results/report/report.html").is_file()
    assert (proj / "results/evaluation/recurrence/radiomics_lr/metrics.tsv").is_file()
    assert not (proj / "results/models/efs").exists()
    assert not (REPO / "results").exists() or not any((REPO / "results").iterdir())
