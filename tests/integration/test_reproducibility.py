"""Incremental centers, determinism (1 vs 2 cores), bad inputs through the real DAG.

Kill and resume at every stage, the lock and a full disk: test_faults.py.
"""

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from .conftest import make_workdir, micro_config, run_snakemake

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
        m = re.match(r"^\s*(?:local)?rule (\w+):", line)  # group jobs are indented
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
    _, _, _, jobs, _ = incremental
    for rule, wc in jobs:
        assert "case=" not in wc, (rule, wc)  # per-case stages run per batch of a center
        if rule in (
            "prepare_image",
            "normalize_image",
            "register_center",
            "extract_radiomics",
            "measure_segmentation",  # per-batch pieces of the cohort-level steps
            "measure_nyul",
            "crop_deep",
            "assemble_center",
            "harmonize_center",
            "predict_center",
        ):
            assert "center=C" in wc, f"{rule} reruns {wc}"
        else:
            assert rule in {
                "register_cohort",
                "evaluate_model",
                "evaluate_segmentation",
                "collect_exclusions",
                "render_report",
                "all",
            }, rule
    assert {r for r, _ in jobs} >= {
        "prepare_image",
        "normalize_image",
        "extract_radiomics",
        "measure_segmentation",
        "harmonize_center",
        "predict_center",
        "render_report",
    }


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


def _break(wd: Path, rel: str, how) -> None:
    """Rewrite one cohort file (image or mask) through ``how(image) -> image``."""
    path = wd / "data" / rel
    sitk.WriteImage(how(sitk.ReadImage(str(path))), str(path))


def _from_array(arr, like):
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(like)
    return out


def _nan_voxels(img):
    arr = sitk.GetArrayFromImage(sitk.Cast(img, sitk.sitkFloat32))
    arr[2, 3, 4] = float("nan")
    return _from_array(arr, img)


def _other_spacing(mask):
    out = mask[:, :, :]
    out.SetSpacing([s * 1.5 for s in mask.GetSpacing()])
    return out


def _labels_2_and_5(mask):
    arr = sitk.GetArrayFromImage(mask).astype("uint8")
    arr[arr > 0] = 2
    arr[: arr.shape[0] // 2][arr[: arr.shape[0] // 2] > 0] = 5
    return _from_array(arr, mask)


def _one_slice(img):
    arr = sitk.GetArrayFromImage(img)
    out = sitk.GetImageFromArray(arr[arr.shape[0] // 2])
    out.SetSpacing(img.GetSpacing()[:2])
    return out


# case -> (sheet column, how the file is broken, words of the one-line reason)
BAD_INPUTS = {
    "A002": ("image_T2", None, ["cannot read image", "broken.nii.gz"]),
    "A003": ("image_T2", _nan_voxels, ["NaN/inf voxels"]),
    "A004": ("image_T2", _one_slice, ["image is 2D, expected a 3D volume"]),
    "B003": ("mask_R1", lambda m: m * 0, ["mask is empty"]),
    "B004": ("mask_R1", _other_spacing, ["mask spacing", "differs from image spacing"]),
    "B005": ("mask_R1", _labels_2_and_5, ["mask has labels [2, 5] but not 1", "mask_label"]),
    "C002": ("mask_R1", None, ["mask lies outside the imaged region"]),
}


def _roi_on_padding(wd: Path, sheet: pd.DataFrame, case: str) -> None:
    """C002: the image has zero padding in one corner and the mask lies only there."""

    row = sheet.set_index("case_id").loc[case]
    img = sitk.ReadImage(str(wd / "data" / row["image_T2"]))
    arr = sitk.GetArrayFromImage(img)
    arr[:4, :6, :6] = arr.min()
    sitk.WriteImage(_from_array(arr, img), str(wd / "data" / row["image_T2"]))
    mask = sitk.ReadImage(str(wd / "data" / row["mask_R1"]))
    roi = np.zeros(sitk.GetArrayViewFromImage(mask).shape, np.uint8)
    roi[1:3, 1:4, 1:4] = 1
    sitk.WriteImage(_from_array(roi, mask), str(wd / "data" / row["mask_R1"]))


def test_every_bad_input_is_excluded_in_one_line_and_others_finish(
    tmp_path, micro_cohort, micro_run
):
    """The preflight QC's bad inputs, through the real DAG: each case is excluded with its
    one-line reason (case, file, problem) and every other case goes on to the report,
    its own outputs byte-identical to the run without the bad inputs (micro_run)."""
    wd = make_workdir(tmp_path / "bad", micro_config(), micro_cohort)
    sheet = pd.read_csv(wd / "data/cases.tsv", sep="\t", dtype=str, keep_default_na=False)
    (wd / "data/broken.nii.gz").write_bytes(b"not an image")
    sheet.loc[sheet["case_id"] == "A002", "image_T2"] = "broken.nii.gz"
    for case, (column, how, _) in BAD_INPUTS.items():
        if how is not None:
            _break(wd, sheet.set_index("case_id").loc[case, column], how)
    _roi_on_padding(wd, sheet, "C002")
    sheet.to_csv(wd / "data/cases.tsv", sep="\t", index=False)
    run_snakemake(wd)
    ex = pd.read_csv(wd / "results/cohort/excluded.tsv", sep="\t", dtype=str)
    ex = ex.set_index("case_id")
    assert sorted(ex.index) == sorted(BAD_INPUTS), ex
    rows = sheet.set_index("case_id")
    for case, (column, _, words) in BAD_INPUTS.items():
        reason = ex.loc[case, "reason"]
        assert "\n" not in reason and reason.startswith(f"case {case}: "), reason
        assert Path(rows.loc[case, column]).name in reason, reason  # names the file
        for w in words:
            assert w in reason, (case, reason)
    good = sorted(set(sheet["case_id"]) - set(BAD_INPUTS))
    tables = [pd.read_parquet(wd / f"results/features/raw/{c}.parquet") for c in "ABC"]
    assert sorted(i for t in tables for i in t.index) == good
    ref, got = checksums(micro_run, "results/cases"), checksums(wd, "results/cases")
    # results/cases/{seq}/{center}/batch{batch}/{stage}/{case}/...
    same = [k for k in ref if k.split("/")[6] in good]
    assert same and [k for k in same if got.get(k) != ref[k]] == []
    report = (wd / "results/report/report.html").read_text(encoding="utf-8")
    for case in BAD_INPUTS:
        assert case in report
    for endpoint, model in (("recurrence", "radiomics_lr"), ("efs", "radiomics_cox")):
        assert (wd / f"results/evaluation/{endpoint}/{model}/metrics.tsv").is_file()
