"""Exclusion markers: a bad case is excluded with its reason; others go on."""

import pandas as pd

from radstudy.casestep import marker_reason, run_case_step, write_marker
from radstudy.errors import CaseError
from radstudy.tables import assemble_center, collect_exclusions, write_feature_row


def test_marker_round_trip_and_real_files_are_not_markers(tmp_path):
    m = tmp_path / "x.nii.gz"
    write_marker(m, "case A: f.nii.gz: mask is empty\nsecond line")
    assert marker_reason(m) == "case A: f.nii.gz: mask is empty second line"
    real = tmp_path / "r.parquet"
    pd.DataFrame({"a": [1.0]}).to_parquet(real)
    assert marker_reason(real) is None
    assert marker_reason(tmp_path / "missing") is None


def test_case_error_writes_markers_to_every_output(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]

    def step():
        raise CaseError("C1", "img.nii.gz", "image contains NaN voxels")

    assert run_case_step("C1", [], outs, step) is False
    assert [marker_reason(o) for o in outs] == [
        "case C1: img.nii.gz: image contains NaN voxels"
    ] * 2


def test_unexpected_error_is_also_one_line_exclusion(tmp_path):
    out = tmp_path / "a"
    assert run_case_step("C2", [], [out], lambda: 1 / 0) is False
    assert marker_reason(out) == "case C2: ZeroDivisionError: division by zero"


def test_marker_in_input_propagates_without_running(tmp_path):
    upstream, out = tmp_path / "up", tmp_path / "down"
    write_marker(upstream, "case C3: m.nii.gz: mask outside image")
    ran = []
    assert run_case_step("C3", [upstream, None], [out], lambda: ran.append(1)) is False
    assert ran == [] and marker_reason(out) == "case C3: m.nii.gz: mask outside image"


def test_assembly_keeps_good_cases_and_lists_excluded(tmp_path):
    sheet = tmp_path / "A.tsv"
    pd.DataFrame(
        {"case_id": ["a1", "a2", "a3"], "center": "A", "split": "train", "age": [1, 2, 3]}
    ).to_csv(sheet, sep="\t", index=False)
    files = {}
    for case in ["a1", "a2", "a3"]:
        f = tmp_path / f"{case}.parquet"
        if case == "a2":
            write_marker(f, "case a2: a2.nii.gz: mask is empty")
        else:
            row = pd.DataFrame({"T2__original_firstorder_Mean": [float(len(case))]}, index=[case])
            write_feature_row(row, f)
        files[case] = [f]
    table = assemble_center(sheet, files, ["age"], tmp_path / "t.parquet", tmp_path / "ex.tsv")
    assert list(table.index) == ["a1", "a3"]
    assert list(table.columns) == [
        "center",
        "split",
        "T2__original_firstorder_Mean",
        "clinical__age",
    ]
    sheet_ex = tmp_path / "sheet_ex.tsv"
    pd.DataFrame(
        {"case_id": ["b9"], "center": ["B"], "stage": ["sheet"], "reason": ["no T2 image"]}
    ).to_csv(sheet_ex, sep="\t", index=False)
    allx = collect_exclusions([sheet_ex, tmp_path / "ex.tsv"], tmp_path / "all.tsv")
    assert allx[["case_id", "stage"]].values.tolist() == [["a2", "processing"], ["b9", "sheet"]]
