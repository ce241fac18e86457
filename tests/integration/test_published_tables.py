"""The ten published feature tables (tests/data/feature_tables) from their raw .csv.gz
with the documented config of a few lines (docs/examples/feature_table.yaml): three
run whole, every one through its first stage (the sheet, the import)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from radstudy.tableio import natural

from .conftest import REPO, make_workdir, run_snakemake

pytestmark = pytest.mark.slow

TABLES = REPO / "tests" / "data" / "feature_tables"
ALL = sorted(p.name.removesuffix(".csv.gz") for p in TABLES.glob("*.csv.gz"))
# the three smallest whole; the bench (bench/bench_tables.py) runs all ten
WHOLE = ["C4KC-KiTS", "Ramella2018", "Wang2024"]


def _config(name: str) -> dict:
    """The example config with this table's file name: the config a user writes."""
    cfg = yaml.safe_load((REPO / "docs" / "examples" / "feature_table.yaml").read_text())
    cfg["cohort"]["sheet"] = cfg["cohort"]["features_table"] = f"data/{name}.csv.gz"
    cfg["endpoints"] = {"target": cfg["endpoints"].pop("idh")}
    return cfg


def _workdir(tmp_path: Path, name: str, cfg: dict) -> Path:
    wd = make_workdir(tmp_path / name, cfg)
    (wd / "data").mkdir()
    shutil.copy(TABLES / f"{name}.csv.gz", wd / "data")
    return wd


def test_the_example_config_is_ten_lines_at_most():
    text = (REPO / "docs" / "examples" / "feature_table.yaml").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) <= 10


@pytest.mark.parametrize("name", ALL)
def test_every_table_through_its_first_stage(tmp_path, name):
    """What rules register_center and import_center do, in-process (the whole runs
    below go through Snakemake): the sheet read and validated, the table imported."""
    from radstudy.cohort import load_cohort, source_columns, to_tsv
    from radstudy.config import with_defaults
    from radstudy.tables import import_center

    cfg = with_defaults(_config(name))  # Wang2024: True/False labels
    wd = _workdir(tmp_path, name, cfg)
    sheet = wd / cfg["cohort"]["sheet"]
    cases, excluded = load_cohort(sheet, cfg, REPO / "rules/schemas/cases.schema.yaml")
    assert excluded.empty
    (wd / "all.tsv").write_text(to_tsv(cases))
    cohort = {k: cfg["cohort"][k] for k in ("id_column", "feature_columns", "ignore_columns")}
    table = import_center(
        sheet, wd / "all.tsv", {**cohort, "clinical": []}, source_columns(cfg),
        wd / "raw.parquet", wd / "excluded.tsv", wd / "columns.tsv",
    )  # fmt: skip
    raw = pd.read_csv(TABLES / f"{name}.csv.gz")
    n_feats = raw.shape[1] - 2  # ID, Target
    assert len(table) == len(raw)
    assert sum(c.startswith("table__") for c in table.columns) == n_feats
    roles = pd.read_csv(wd / "columns.tsv", sep="\t")
    assert roles.set_index("column").loc[["ID", "Target"], "role"].tolist() == ["id", "sheet"]
    assert (roles["role"] == "feature").sum() == n_feats
    positives = int(raw["Target"].astype(str).str.lower().isin(["1", "true"]).sum())
    assert int(cases["Target"].sum()) == positives
    # ids in natural order, as text
    assert list(cases["case_id"]) == natural(raw["ID"].astype(str))


@pytest.mark.parametrize("name", WHOLE)
def test_a_table_runs_whole(tmp_path, name):
    cfg = _config(name)
    # the default (searched) model at a reduced budget for CI; the bench
    # (bench/bench_tables.py) runs the example config as it is
    cfg["models"] = {"target": {"auto": {"groups": ["radiomics"], "search": {"n_trials": 8}}}}
    cfg["evaluation"] = {"cv": {"n_repeats": 1}, "bootstrap": 200}
    wd = _workdir(tmp_path, name, cfg)
    run_snakemake(wd)
    assert (wd / "results/report/report.html").is_file()
    # the default models (config.schema.yaml $defs.default_models), each evaluated
    models = sorted((wd / "results/evaluation/target").glob("*/metrics.tsv"))
    assert models
    for path in models:
        m = pd.read_csv(path, sep="\t")
        cv = m[(m["cohort"] == "cv") & (m["metric"] == "auc")]["value"].item()
        assert 0.0 <= cv <= 1.0
