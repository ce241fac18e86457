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
        "image_T2": [
            "img/c1.nii.gz",
            "img/c2.nii.gz",
            str(tmp_path / "abs/c3.nii.gz"),
            "img/7.nii.gz",
        ],
        "mask_R1": ["m/c1.nii.gz", "m/c2.nii.gz", "m/c3.nii.gz", "m/7.nii.gz"],
        "mask_R2": ["m/c1b.nii.gz", "", "m/c3b.nii.gz", ""],
        "age": ["10", "12", "", "5"],
        "label": ["0", "1", "1", "0"],
        "t": ["3.5", "10", "7", "1"],
        "e": ["1", "0", "1", "1"],
    }
    base.update(changes)
    df = pd.DataFrame(base)
    for col in ("image_T2", "mask_R1", "mask_R2"):  # the sheet's files exist
        for name in filter(None, df[col]):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).touch()
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
        ({"age": ["10", "ten", "", "5"]}, "row 3 (case c2), column 'age'"),
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


@pytest.mark.parametrize(
    ("expr", "what"),
    [
        ("age.abs() < 11", "a function call"),
        ("__import__('os').system('true') == 0", "a function call"),
        ("age.__class__ == 1", "attribute access"),
        ("age < @limit", "'@'"),
        ("center[0] == 'A'", "indexing"),
        ("(lambda: 1)() == 1", "a function call"),
    ],
)
def test_inclusion_expression_may_only_compare_columns_with_values(tmp_path, expr, what):
    cfg = {**CFG, "cohort": {**CFG["cohort"], "require": [], "inclusion": [expr]}}
    with pytest.raises(ConfigError) as err:
        load_cohort(_sheet(tmp_path), cfg, SCHEMA)
    msg = str(err.value)
    assert "\n" not in msg and "is refused" in msg and what in msg and expr in msg


def test_allowed_inclusion_expressions(tmp_path):
    for expr in ("age < 11 and center in ['A', 'B']", "not (age >= 11) or `age` == 12"):
        cfg = {**CFG, "cohort": {**CFG["cohort"], "require": [], "inclusion": [expr]}}
        cases, _ = load_cohort(_sheet(tmp_path), cfg, SCHEMA)
        assert len(cases)


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


def test_split_batches_keep_training_cases_apart():
    from radstudy.cohort import batches, split_batches

    ids = [f"A{i:03d}" for i in range(1, 12)]
    train = {"A001", "A002", "A004", "A005", "A007", "A008", "A010"}  # 7 of 11
    got = split_batches(ids, train, 4)
    assert got == {
        "001": ["A001", "A002", "A004", "A005"],
        "002": ["A007", "A008", "A010"],
        "003": ["A003", "A006", "A009", "A011"],
    }
    assert split_batches(ids, set(ids), 4) == batches(ids, 4)
    assert split_batches(ids, set(), 4)["001"] == ["A001", "A002", "A003", "A004"]


def _published(tmp_path, name="t.csv.gz", **cols):
    df = pd.DataFrame(
        {
            "ID": ["10", "2", "1", "3"],
            "Target": ["yes", "no", "yes", "no"],
            "t": ["5", "3", "1", "2"],
            "status": ["2", "1", "2", "1"],
            "f": ["0.1", "0.2", "0.3", "0.4"],
        }
    )
    for k, v in cols.items():
        df[k] = v
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _table_cfg(**endpoint):
    return with_defaults(
        {
            "cohort": {
                "sheet": "t.csv.gz",
                "id_column": "ID",
                "center_column": "",
                "split_column": "",
                "features_table": "t.csv.gz",
                "feature_columns": ["*"],
            },
            "endpoints": {"y": {"type": "binary", "column": "Target", **endpoint}},
        }
    )


def test_a_published_table_is_a_sheet_with_a_stated_positive_class(tmp_path):
    cases, excluded = load_cohort(_published(tmp_path), _table_cfg(positive="yes"), SCHEMA)
    # the id column becomes case_id, one center "all", every case a training case,
    # ids in natural order, yes -> 1
    assert list(cases["case_id"]) == ["1", "2", "3", "10"]
    assert set(cases["center"]) == {"all"} and set(cases["split"]) == {"train"}
    assert list(cases["Target"]) == [1, 0, 0, 1]
    assert excluded.empty


def test_text_labels_need_a_positive_class(tmp_path):
    with pytest.raises(ConfigError, match="'yes' is not 0 or 1.*endpoints.y.positive"):
        load_cohort(_published(tmp_path), _table_cfg(), SCHEMA)
    with pytest.raises(ConfigError, match="positive is 'maybe' but column 'Target' has only"):
        load_cohort(_published(tmp_path), _table_cfg(positive="maybe"), SCHEMA)
    path = _published(tmp_path, Target=["True", "False", "false", "TRUE"])
    cases, _ = load_cohort(path, _table_cfg(), SCHEMA)  # True/False: True is positive
    assert list(cases["Target"]) == [0, 0, 1, 1]
    path = _published(tmp_path, Target=["a", "b", "c", "a"])
    with pytest.raises(ConfigError, match="has 3 values \\(a, b, c\\); a binary outcome has two"):
        load_cohort(path, _table_cfg(positive="a"), SCHEMA)


def test_survival_events_coded_1_2(tmp_path):
    cfg = _table_cfg(positive="yes")
    cfg["endpoints"]["os"] = {"type": "survival", "time": "t", "event": "status"}
    with pytest.raises(ConfigError, match="column 'status': '2' is not 0 or 1"):
        load_cohort(_published(tmp_path), cfg, SCHEMA)
    cfg["endpoints"]["os"]["positive"] = 2
    cases, _ = load_cohort(_published(tmp_path), cfg, SCHEMA)
    assert list(cases["status"]) == [1, 0, 0, 1]


def test_configured_id_column_must_exist(tmp_path):
    cfg = _table_cfg(positive="yes")
    cfg["cohort"]["id_column"] = "PatientID"
    with pytest.raises(
        ConfigError, match="no column 'PatientID' \\(config key cohort.id_column\\)"
    ):
        load_cohort(_published(tmp_path), cfg, SCHEMA)
    cfg["cohort"]["id_column"] = "ID"
    cfg["cohort"]["center_column"] = "center"
    with pytest.raises(ConfigError, match="or set cohort.center_column: ''"):
        load_cohort(_published(tmp_path), cfg, SCHEMA)


def test_the_fold_column_is_carried(tmp_path):
    cfg = _table_cfg(positive="yes")
    cfg["evaluation"]["cv"]["fold_column"] = "fold"
    with pytest.raises(ConfigError, match="missing column\\(s\\) fold"):
        load_cohort(_published(tmp_path), cfg, SCHEMA)
    cases, _ = load_cohort(_published(tmp_path, fold=["1", "2", "1", "2"]), cfg, SCHEMA)
    assert list(cases["fold"]) == [1, 2, 2, 1]


def test_resolve_paths_resolves_links_like_path_resolve(tmp_path):
    """Each folder is resolved once; the result is Path.resolve's: linked folders and
    linked files followed, relative parts gone, absolute paths and gaps kept."""
    from radstudy.cohort import resolve_paths

    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.nii.gz").write_bytes(b"x")
    (real / "b.nii.gz").write_bytes(b"y")
    sheet_dir = tmp_path / "sheet"
    sheet_dir.mkdir()
    (sheet_dir / "images").symlink_to(real)
    (sheet_dir / "link.nii.gz").symlink_to(real / "b.nii.gz")
    values = [
        "images/sub/a.nii.gz",
        "images/sub/../b.nii.gz",
        "link.nii.gz",
        "./images/b.nii.gz",
        "missing/c.nii.gz",
        str(real / "b.nii.gz"),
        None,
    ]
    got = resolve_paths(pd.DataFrame({"p": values}), sheet_dir, ["p"])["p"].tolist()
    want = [None if v is None else str((sheet_dir / v).resolve()) for v in values]
    assert got == want
    assert got[0] == str(real / "sub" / "a.nii.gz") and got[2] == str(real / "b.nii.gz")
