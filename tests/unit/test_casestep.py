"""Exclusion markers: a bad case is excluded with its reason; others go on."""

import errno
import os
import signal

import pandas as pd
import pytest

from radstudy.casestep import (
    CaseJob,
    marker_reason,
    run_case_batch,
    run_case_step,
    run_isolated,
    write_marker,
)
from radstudy.errors import CaseError, ConfigError
from radstudy.tables import assemble_center, assemble_readers, collect_exclusions


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


def _batch(tmp_path, name, rows, excluded):
    """A feature batch as rule extract_radiomics writes it."""
    f, e = tmp_path / f"{name}.parquet", tmp_path / f"{name}.excluded.tsv"
    pd.DataFrame(rows, columns=["case_id", "reader", "feature", "value"]).to_parquet(f)
    pd.DataFrame(excluded, columns=["case_id", "reader", "reason"]).to_csv(e, sep="\t", index=False)
    return f, e


def test_assembly_keeps_good_cases_and_lists_excluded(tmp_path):
    sheet = tmp_path / "A.tsv"
    pd.DataFrame(
        {"case_id": ["a1", "a2", "a3", "a4"], "center": "A", "split": "train", "age": [1, 2, 3, 4]}
    ).to_csv(sheet, sep="\t", index=False)
    t1 = _batch(
        tmp_path,
        "t1",
        [
            [c, r, "T1__original_firstorder_Mean", float(len(c) + i)]
            for c in ("a1", "a2", "a3")
            for i, r in enumerate(("R1", "R2"))
        ],
        [["a4", "R1", "case a4: a4.nii.gz: image has NaN voxels"]],
    )
    t2 = _batch(
        tmp_path,
        "t2",
        [[c, "R1", "T2__original_firstorder_Mean", 7.0] for c in ("a1", "a3", "a4")],
        [
            ["a2", "R1", "case a2: a2.nii.gz: mask is empty"],
            ["a4", "R1", "case a4: T2 reason, second"],
        ],
    )
    table = assemble_center(
        sheet, [t1, t2], "R1", ["age"], tmp_path / "t.parquet", tmp_path / "ex.tsv"
    )
    assert list(table.index) == ["a1", "a3"]
    assert list(table.columns) == [
        "center",
        "split",
        "T1__original_firstorder_Mean",
        "T2__original_firstorder_Mean",
        "clinical__age",
    ]
    assert table["T1__original_firstorder_Mean"].tolist() == [2.0, 2.0]
    ex = pd.read_csv(tmp_path / "ex.tsv", sep="\t")
    assert ex[["case_id", "reason"]].values.tolist() == [
        ["a2", "case a2: a2.nii.gz: mask is empty"],
        ["a4", "case a4: a4.nii.gz: image has NaN voxels"],  # the first sequence's reason
    ]
    # reader R2 of a2 is fine although R1 of a2 is excluded; R2 has no T2 features here
    long = assemble_readers([t1], ["a1", "a2", "a4"], ["R1", "R2"], tmp_path / "r.parquet")
    assert long[["case_id", "reader"]].values.tolist() == [
        ["a1", "R1"],
        ["a1", "R2"],
        ["a2", "R1"],
        ["a2", "R2"],
    ]
    assert long["T1__original_firstorder_Mean"].tolist() == [2.0, 3.0, 2.0, 3.0]
    long = assemble_readers([t1, t2], ["a1", "a2"], ["R1"], tmp_path / "r.parquet")
    assert long[["case_id", "reader"]].values.tolist() == [["a1", "R1"]]
    sheet_ex = tmp_path / "sheet_ex.tsv"
    pd.DataFrame(
        {"case_id": ["b9"], "center": ["B"], "stage": ["sheet"], "reason": ["no T2 image"]}
    ).to_csv(sheet_ex, sep="\t", index=False)
    allx = collect_exclusions([sheet_ex, tmp_path / "ex.tsv"], tmp_path / "all.tsv")
    assert allx[["case_id", "stage"]].values.tolist() == [
        ["a2", "processing"],
        ["a4", "processing"],
        ["b9", "sheet"],
    ]


def _square_or_fail(x):
    import os
    import signal

    if x == 3:
        raise ValueError("three is bad")
    if x == 4:
        import faulthandler

        faulthandler.disable()  # pytest's traceback dump: noise for a crash on purpose
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == 5:
        os._exit(2)
    return x * x


def test_run_isolated_one_crash_never_takes_the_others_down():
    items = {f"k{x}": x for x in range(1, 8)}
    for workers in (1, 3):
        got = {
            k: (status, value) for k, status, value in run_isolated(_square_or_fail, items, workers)
        }
        assert got == {
            "k1": ("ok", 1),
            "k2": ("ok", 4),
            "k3": ("error", "ValueError: three is bad"),
            "k4": ("died", "its process was killed by SIGSEGV"),
            "k5": ("died", "its process exited with code 2 before returning a result"),
            "k6": ("ok", 36),
            "k7": ("ok", 49),
        }, workers


def test_run_isolated_starts_items_in_the_given_order():
    items = {"a": 1, "b": 2, "c": 3}
    got = [k for k, _, _ in run_isolated(_square_or_fail, items, 1, order=["c", "a", "b"])]
    assert got == ["c", "a", "b"]  # one worker: each finishes before the next starts
    assert [k for k, _, _ in run_isolated(_square_or_fail, items, 1)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="every item once"):
        list(run_isolated(_square_or_fail, items, 1, order=["c", "a"]))


def _batch_step(kind: str, out):
    """A case step of run_case_batch: writes ``out`` or fails the way ``kind`` says."""

    def step():
        if kind == "case_error":
            raise CaseError("c", "img.nii.gz", "mask is empty")
        if kind == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if kind == "config":
            raise ConfigError("preprocess.spacing: unknown")
        if kind == "disk":
            raise OSError(errno.ENOSPC, "No space left on device", str(out))
        out.write_text(f"ran in {os.getpid()}")

    return step


def test_run_case_batch_excludes_a_bad_or_crashed_case_only(tmp_path):
    marker = tmp_path / "upstream.nii.gz"
    write_marker(marker, "case d: img.nii.gz: not an image")
    kinds = {"a": "ok", "b": "case_error", "c": "segfault", "d": "ok", "e": "ok"}
    outs = {c: tmp_path / "batch" / c / "out.nii.gz" for c in kinds}
    jobs = {
        c: CaseJob([marker if c == "d" else None], [outs[c]], _batch_step(k, outs[c]))
        for c, k in kinds.items()
    }
    for workers in (1, 2):
        got = run_case_batch(jobs, workers=workers)
        assert list(got) == sorted(kinds)
        assert got["a"] is None and got["e"] is None
        assert got["b"] == "case c: img.nii.gz: mask is empty"
        assert got["c"] == "case c: crashed: its process was killed by SIGSEGV"
        assert got["d"] == "case d: img.nii.gz: not an image"  # not run: its input is a marker
        for case, reason in got.items():
            assert marker_reason(outs[case]) == reason
        pids = {outs[c].read_text() for c in ("a", "e")}
        assert len(pids) == 2 and f"ran in {os.getpid()}" not in pids  # own processes


def test_run_case_batch_stops_on_a_config_or_disk_problem(tmp_path):
    out = tmp_path / "x" / "out.nii.gz"
    with pytest.raises(ConfigError, match="preprocess.spacing"):
        run_case_batch({"a": CaseJob([], [out], _batch_step("config", out))})
    with pytest.raises(OSError) as err:
        run_case_batch({"a": CaseJob([], [out], _batch_step("disk", out))})
    assert err.value.errno == errno.ENOSPC and not out.exists()
