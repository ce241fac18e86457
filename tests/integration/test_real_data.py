"""The real per-case DAG on real MRI: 10 soft-tissue-sarcoma T1 volumes as one center.

tests/data/sts_mri/ holds 10 public STS cases (IBSI validation set, TCIA; see
tests/data/README.md): an MR T1 image and its GTV mask per case, 0.98 x 0.98 x
3.27 mm, 28 to 585 ml tumors. The run goes from the cohort sheet to the center's
wide feature table only (prepare_image -> normalize_image -> extract_radiomics ->
assemble_center, plus collect_exclusions); no models, no report. Single center,
single reader: ComBat and the ICC filter are off, and no endpoint is configured
(the config schema allows ``endpoints: {}``), so the sheet needs no outcome or
clinical column. About 2 minutes on 2 cores at the default 1 mm isotropic
spacing (the slowest case, STS_005, ~45 s of pyradiomics).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from .conftest import REPO, case_file, make_workdir, run_snakemake

pytestmark = pytest.mark.slow

DATA = REPO / "tests" / "data" / "sts_mri"
CENTER = "STS"
SEQ = "T1"
READER = "R1"
# Cases the workflow is known to exclude, with a fragment of their reason. All 10
# cases currently pass QC; a new exclusion must be explained here.
EXPECTED_EXCLUDED: dict[str, str] = {}
# per-case rules (run per extraction batch) whose log must list every case
CASE_RULES = ("prepare_image", "normalize_image")
TARGETS = (
    f"results/features/raw/{CENTER}.parquet",
    "results/cohort/excluded.tsv",
)


def _cases() -> dict[str, tuple[Path, Path]]:
    cases = {
        d.name: (d / "MR_T1_image.nii.gz", d / "MR_T1_mask.nii.gz")
        for d in sorted(DATA.glob("STS_*"))
        if d.is_dir()
    }
    assert len(cases) == 10, f"expected 10 STS cases in {DATA}, found {sorted(cases)}"
    for image, mask in cases.values():
        assert image.is_file() and mask.is_file(), (image, mask)
    return cases


def _config() -> dict:
    """Real-data config: everything not set here takes its config.schema.yaml default."""
    return {
        "study": {"name": "sts_mri_real", "description": "10 real STS MRI T1 volumes"},
        "seed": 42,
        "cohort": {
            "sheet": "data/cases.tsv",
            "sequences": [SEQ],
            "modality": "MRI",
            "readers": [READER],
            "reference_reader": READER,
            "repeats": {},
            "clinical": [],
            "descriptors": [],
            "organ_mask_column": "",
            "require": [],
            "inclusion": [],
        },
        "synthetic": {"enabled": False, "spec": {}},  # real sheet: never generate one
        "endpoints": {},  # image stages only: no model, so no outcome columns needed
        "models": {},
        "preprocess": {
            "spacing": [1.0, 1.0, 1.0],
            "interpolator": "bspline",
            "n4": {"enabled": True, "shrink_factor": 2, "iterations": [20, 20, 10]},
            "normalization": "zscore",
            "scale": 100,
        },
        "segmentation": {"method": "readers"},
        "features": {"params": "mri_fast.yaml", "mode": "3d", "model_reader": READER},
        "deep": {"enabled": False},
        "harmonization": {"enabled": False},  # a single center
        "reproducibility": {"enabled": False},  # a single reader
    }


def _write_sheet(path: Path, cases: dict[str, tuple[Path, Path]]) -> None:
    """Cohort sheet with absolute paths to the files in tests/data (nothing copied)."""
    sheet = pd.DataFrame(
        [
            {
                "case_id": case,
                "center": CENTER,
                "split": "train",
                f"image_{SEQ}": str(image),
                f"mask_{READER}": str(mask),
            }
            for case, (image, mask) in cases.items()
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.to_csv(path, sep="\t", index=False, lineterminator="\n")


@pytest.fixture(scope="module")
def sts_run(tmp_path_factory) -> tuple[Path, dict]:
    cases = _cases()
    wd = make_workdir(tmp_path_factory.mktemp("sts_real"), _config())
    _write_sheet(wd / "data" / "cases.tsv", cases)
    start = time.monotonic()
    proc = run_snakemake(wd, *TARGETS)
    elapsed = time.monotonic() - start
    print(f"\nsts_mri: snakemake on {len(cases)} real cases took {elapsed:.0f} s")
    assert "Error" not in proc.stderr, proc.stderr[-4000:]
    return wd, cases


def _excluded(wd: Path) -> pd.DataFrame:
    return pd.read_csv(wd / "results/cohort/excluded.tsv", sep="\t", dtype=str)


def _table(wd: Path) -> pd.DataFrame:
    return pd.read_parquet(wd / f"results/features/raw/{CENTER}.parquet")


def test_every_case_is_in_the_table_or_excluded_with_a_reason(sts_run):
    wd, cases = sts_run
    table, excluded = _table(wd), _excluded(wd)
    assert list(excluded.columns) == ["case_id", "center", "stage", "reason"]
    for row in excluded.itertuples():
        assert row.case_id in cases, row
        reason = str(row.reason)
        assert reason.strip() and "\n" not in reason, f"{row.case_id}: {reason!r}"
        assert row.case_id in reason, f"reason does not name the case: {reason!r}"
    excluded_ids = set(excluded["case_id"])
    assert excluded_ids == set(EXPECTED_EXCLUDED), excluded.to_string()
    for case, fragment in EXPECTED_EXCLUDED.items():
        assert fragment in excluded.set_index("case_id").loc[case, "reason"]
    assert table.index.name == "case_id"
    assert list(table.index) == sorted(set(cases) - excluded_ids)
    assert len(table) + len(excluded_ids) == 10
    assert (table["center"] == CENTER).all() and (table["split"] == "train").all()


def test_feature_columns_are_pyradiomics_names(sts_run):
    from radiomics import getFeatureClasses

    wd, _ = sts_run
    table = _table(wd)
    feats = [c for c in table.columns if c not in ("center", "split")]
    assert len(feats) > 90, feats  # mri_fast.yaml: shape + 6 texture/first-order classes
    classes = {name: set(cls.getFeatureNames()) for name, cls in getFeatureClasses().items()}
    for col in feats:
        prefix, _, name = col.partition("__")
        assert prefix == SEQ, col
        image_type, feature_class, feature = name.split("_", 2)
        assert image_type == "original", col
        assert feature in classes[feature_class], col
    for key in ("firstorder_Mean", "shape_MeshVolume", "glcm_Contrast", "ngtdm_Busyness"):
        assert f"{SEQ}__original_{key}" in table.columns
    assert table[feats].dtypes.eq("float64").all()
    assert np.isfinite(table[feats].to_numpy()).all(), (
        table[feats].columns[~np.isfinite(table[feats].to_numpy()).all(axis=0)].tolist()
    )


def test_tumor_volumes_match_the_masks(sts_run):
    """MeshVolume (mm^3) after resampling to 1 mm vs the original mask's voxel volume."""
    wd, cases = sts_run
    table = _table(wd)
    for case in table.index:
        mask = sitk.ReadImage(str(cases[case][1]))
        voxels = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
        expected = voxels * float(np.prod(mask.GetSpacing()))
        mesh = table.loc[case, f"{SEQ}__original_shape_MeshVolume"]
        assert mesh > 0, case
        assert mesh == pytest.approx(expected, rel=0.10), (case, mesh, expected)
        # 28 to 585 ml tumors: plausible soft-tissue sarcoma volumes
        assert 1e3 < mesh < 2e6, (case, mesh)


def test_per_case_outputs_and_logs(sts_run):
    wd, cases = sts_run
    for rule in CASE_RULES:
        logs = sorted((wd / "logs" / rule).glob(f"{CENTER}_{SEQ}_batch*.log"))
        text = "".join(p.read_text() for p in logs)
        assert logs and "Traceback" not in text, rule
        for case in cases:
            assert f" {case}: done" in text or case in EXPECTED_EXCLUDED, (rule, case)
    for case in cases:
        if case in EXPECTED_EXCLUDED:
            continue
        for name in ("prepared.nii.gz", "image.nii.gz", f"mask_{READER}.nii.gz"):
            path = case_file(wd, case, SEQ, name)
            assert path.read_bytes()[:2] == b"\x1f\x8b", path  # gzip, no marker
        qc = json.loads(case_file(wd, case, SEQ, "qc.json").read_text())
        assert qc["output_spacing"] == [1.0, 1.0, 1.0]
        assert qc["mask_voxels"][READER] > 0
    # extraction: batches of features.batch_size cases (schema default), a log each
    from radstudy.cohort import batches

    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text())
    size = schema["properties"]["features"]["properties"]["batch_size"]["default"]
    expected = batches(sorted(cases), size)
    logs = sorted((wd / "logs/extract_radiomics").glob(f"{CENTER}_{SEQ}_batch*.log"))
    assert [p.name for p in logs] == [f"{CENTER}_{SEQ}_batch{b}.log" for b in expected]
    text = "".join(p.read_text() for p in logs)
    assert "Traceback" not in text
    for case in cases:
        if case not in EXPECTED_EXCLUDED:
            assert f" {case}: 1 reader(s) extracted, 0 excluded" in text, case
    long = pd.concat(
        pd.read_parquet(wd / f"results/features/radiomics/{SEQ}/{CENTER}/batch{b}.parquet")
        for b in expected
    )
    assert sorted(set(long["case_id"])) == sorted(set(cases) - set(EXPECTED_EXCLUDED))
    assert set(long["reader"]) == {READER}
    assert (wd / f"logs/assemble_center/{CENTER}.log").is_file()
