"""Cohort sheet: validation errors name row and column; inclusion; per-center slices."""

from pathlib import Path

import pandas as pd
import pytest

from radstudy.cohort import load_cohort, materialize, write_if_changed
from radstudy.config import with_defaults
from radstudy.errors import ConfigError

SCHEMA = Path(__file__).resolve().parents[2] / "rules" / "schemas" / "cases.schema.yaml"
CFG = with_defaults(
    {
        "cohort": {
            "sequences": ["T2"],
            "readers": ["R1", "R2"],
            "reference_reader": "R1",
            "clinical": ["age"],
            "require": ["age"],
            "inclusion": [],
        },
        "endpoints": {
            "rec": {"type": "binary", "column": "label"},
            "efs": {"type": "survival", "time": "t", "event": "e"},
        },
    }
)


def _sheet(tmp_path, rows=None, **changes) -> Path:
    base = {
        "case_id": ["c1", "c2", "c3", "007"],
        "center": ["A", "A", "B", "B"],
        "split": ["train", "test", "train", "external"],
        "image_T2": ["img/c1.nii.gz", "img/c2.nii.gz", "/abs/c3.nii.gz", "img/7.nii.gz"],
        "mask_R1": ["m/c1.nii.gz", "m/c2.nii.gz", "m/c3.nii.gz", "m/7.nii.gz"],
        "mask_R2": ["m/c1b.nii.gz", "", "m/c3b.nii.gz", ""],
        "age": ["10", "12", "", "5"],
        "label": ["0", "1", "1", "0"],
        "t": ["3.5", "10", "7", "1"],
        "e": ["1", "0", "1", "1"],
    }
    base.update(changes)
    df = pd.DataFrame(base)
    path = tmp_path / "cases.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def test_valid_sheet_loads_with_string_ids_and_absolute_paths(tmp_path):
    cases, excluded = load_cohort(_sheet(tmp_path), CFG, SCHEMA)
    assert list(cases["case_id"]) == ["007", "c1", "c2"]  # ids stay text, sorted
    assert cases.set_index("case_id").loc["c1", "image_T2"] == str(tmp_path / "img/c1.nii.gz")
    assert cases.set_index("case_id").loc["c2", "mask_R2"] is None
    # c3 lacks the required 'age' value -> excluded with a reason, not an error
    assert excluded.to_dict("records") == [
        {"case_id": "c3", "center": "B", "stage": "sheet", "reason": "missing required value 'age'"}
    ]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"split": ["train", "tst", "train", "external"]}, "row 3 (case c2), column 'split'"),
        ({"label": ["0", "2", "1", "0"]}, "row 3 (case c2), column 'label'"),
        ({"t": ["3.5", "-1", "7", "1"]}, "row 3 (case c2), column 't'"),
        ({"age": ["10", "ten", "", "5"]}, "row 2 (case c1), column 'age'"),
        ({"case_id": ["c1", "c1", "c3", "007"]}, "duplicated case_id(s): c1"),
    ],
)
def test_sheet_errors_name_row_and_column(tmp_path, change, expected):
    with pytest.raises(ConfigError) as err:
        load_cohort(_sheet(tmp_path, **change), CFG, SCHEMA)
    assert expected in str(err.value).splitlines()[0]


def test_missing_column_is_named(tmp_path):
    path = _sheet(tmp_path)
    df = pd.read_csv(path, sep="\t").drop(columns=["mask_R2"])
    df.to_csv(path, sep="\t", index=False)
    with pytest.raises(ConfigError, match="missing column.*mask_R2"):
        load_cohort(path, CFG, SCHEMA)


def test_no_training_rows_is_an_error(tmp_path):
    path = _sheet(tmp_path, split=["test", "test", "external", "external"])
    with pytest.raises(ConfigError, match="no row has split 'train'"):
        load_cohort(path, CFG, SCHEMA)


def test_inclusion_expression(tmp_path):
    cfg = {**CFG, "cohort": {**CFG["cohort"], "require": [], "inclusion": ["age < 11"]}}
    cases, excluded = load_cohort(_sheet(tmp_path), cfg, SCHEMA)
    assert sorted(cases["case_id"]) == ["007", "c1"]
    assert set(excluded["case_id"]) == {"c2", "c3"}
    assert excluded["reason"].str.contains("age < 11").all()


def test_bad_inclusion_expression_is_config_error(tmp_path):
    cfg = {**CFG, "cohort": {**CFG["cohort"], "inclusion": ["nonexistent > 1"]}}
    with pytest.raises(ConfigError, match="nonexistent"):
        load_cohort(_sheet(tmp_path), cfg, SCHEMA)


def test_materialize_keeps_unchanged_center_files(tmp_path):
    cases, excluded = load_cohort(_sheet(tmp_path), CFG, SCHEMA)
    out = tmp_path / "out"
    materialize(cases, excluded, out)
    a = out / "centers" / "A.tsv"
    before = a.stat().st_mtime_ns
    assert not write_if_changed(a, a.read_text())
    # a new center arrives: center A's slice is untouched
    more = pd.concat([cases, cases.iloc[[0]].assign(case_id="n1", center="NEW")])
    materialize(more, excluded, out)
    assert a.stat().st_mtime_ns == before
    assert (out / "centers" / "NEW.tsv").is_file()


@pytest.mark.parametrize(
    ("n_batches", "cores", "largest", "threads"),
    [
        (1, 2, 16, 2),  # one small center: both cores in its one job
        (2, 2, 16, 1),  # two jobs side by side
        (4, 2, 15, 1),  # the demo: four centers
        (3, 2, 16, 2),  # 1 thread: two waves of jobs; 2 threads: 1.5 job-lengths
        (5, 2, 16, 2),
        (7, 16, 16, 16),  # 7 x 16 cases on 16 cores: 7 case-lengths (2 threads: 8)
        (8, 16, 16, 2),  # 8 jobs of 2 threads: one wave of 8 case-lengths
        (1, 16, 3, 3),  # no more threads than cases
        (4, 1, 16, 1),
        (0, 2, 0, 1),  # empty cohort
    ],
)
def test_batch_threads_fill_the_cores(n_batches, cores, largest, threads):
    from radstudy.cohort import batch_threads

    assert batch_threads(n_batches, cores, largest) == threads


def test_batches_are_balanced_sorted_runs():
    from radstudy.cohort import batches

    ids = [f"A{i:03d}" for i in range(10, 0, -1)]
    assert batches(ids, 8) == {
        "001": ["A001", "A002", "A003", "A004", "A005"],
        "002": ["A006", "A007", "A008", "A009", "A010"],
    }
    got = batches([f"c{i:02d}" for i in range(17)], 8)
    assert [len(v) for v in got.values()] == [6, 6, 5]
    assert sum(got.values(), []) == sorted(f"c{i:02d}" for i in range(17))
    assert batches(["x"], 8) == {"001": ["x"]}
    assert batches([], 8) == {}
    assert list(batches(ids, 1).values()) == [[c] for c in sorted(ids)]
    with pytest.raises(ConfigError, match="batch_size"):
        batches(ids, 0)
