"""The whole workflow on a center of DICOM studies with RTSTRUCT masks.

Five real soft-tissue sarcoma T1 cases (tests/data/sts_mri) are written as DICOM
study folders (tests/dicom_fixtures.write_study): the T1 series (stored with a
rescale slope and intercept) and a second series in subfolders, and an RTSTRUCT
with two ROIs (Body, GTV) beside them. The sheet points at the study folders and
the RTSTRUCT files; cohort.series picks the T1 by its description (and, for one
case, by the SeriesInstanceUID in a sheet column), cohort.roi the GTV. The
training-median spacing (preprocess.spacing: median) is read from the studies.

A second run takes the same cases from NIfTI: the original images, with the GTV
as the RTSTRUCT fills it on the original grid (so both runs see the same voxels;
how closely the RTSTRUCT follows the original mask is test_dicomio's question).
The two runs' features must agree, and no patient or institution string of the
DICOM headers may reach any file the run writes (results/, logs/, .snakemake/,
benchmarks/): de-identification by construction.

The SLIC pseudo-reader's masks go back to DICOM as SEG files on the source
series (segmentation.export: dicom_seg), written to export/ (a SEG names the
patient); read back onto the series they equal the masks (Dice 1.0).

No endpoint, so no model: the run goes to the report (QC, cohort, segmentation
agreement, feature tables). About a minute per run on 2 cores.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radstudy import dicomio
from tests.dicom_fixtures import IDENTIFIERS, STS, write_study

from .conftest import case_file, make_workdir, run_snakemake

pytestmark = pytest.mark.slow

CASES = ("STS_002", "STS_003", "STS_008", "STS_010", "STS_012")  # the smaller volumes
CENTER = "DCM"
SEQ = "T1"
READER = "R1"
UID_CASE = "STS_003"  # its series also named by SeriesInstanceUID (sheet column uid_T1)
TARGETS = ("all",)


def _config() -> dict:
    return {
        "study": {"name": "dicom_center", "description": "5 STS T1 studies read from DICOM"},
        "seed": 42,
        "cohort": {
            "sheet": "data/cases.tsv",
            "sequences": [SEQ],
            "modality": "MRI",
            "readers": [READER],
            "reference_reader": READER,
            "series": {SEQ: {"description": ["*t1*"], "modality": "MR", "uid_column": "uid_T1"}},
            "roi": {READER: ["GTV", "tumo*"]},
        },
        "synthetic": {"enabled": False, "spec": {}},
        "endpoints": {},
        "models": {},
        "preprocess": {"spacing": "median", "normalization": "zscore"},
        # a pseudo-reader, exported as DICOM SEG on the source series (issue 18 item 3)
        "segmentation": {"method": "slic_fcm", "export": "dicom_seg"},
        "features": {"params": "mri_fast.yaml", "model_reader": READER},
        "deep": {"enabled": False},
        "harmonization": {"enabled": False},  # one center
        "reproducibility": {"enabled": False},  # one reader
        "evaluation": {"bootstrap": 100},
    }


def _sheet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, lineterminator="\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Build the studies, run the DICOM center and its NIfTI twin."""
    dicom_wd = make_workdir(tmp_path_factory.mktemp("dicom_run"), _config())
    nifti_wd = make_workdir(tmp_path_factory.mktemp("nifti_run"), _config())
    studies, dicom_rows, nifti_rows = {}, [], []
    for case in CASES:
        folder = dicom_wd / "data" / "studies" / case
        st = studies[case] = write_study(case, folder)
        uid = st["t1"][0].SeriesInstanceUID if case == UID_CASE else ""
        dicom_rows.append(
            {
                "case_id": case,
                "center": CENTER,
                "split": "train",
                f"image_{SEQ}": f"studies/{case}",
                f"mask_{READER}": f"studies/{case}/rtstruct.dcm",
                "uid_T1": uid,
            }
        )
        # the NIfTI twin: the original image, the GTV as the RTSTRUCT fills it
        gtv = dicomio.read_mask(st["rtstruct"], case, st["image"], None, ["GTV"])
        mask = nifti_wd / "data" / "masks" / f"{case}.nii.gz"
        mask.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(gtv, str(mask))
        nifti_rows.append(
            {
                "case_id": case,
                "center": CENTER,
                "split": "train",
                f"image_{SEQ}": str(STS / case / "MR_T1_image.nii.gz"),
                f"mask_{READER}": f"masks/{case}.nii.gz",
                "uid_T1": "",
            }
        )
    _sheet(dicom_wd / "data" / "cases.tsv", dicom_rows)
    _sheet(nifti_wd / "data" / "cases.tsv", nifti_rows)
    took = {}
    for name, wd in (("dicom", dicom_wd), ("nifti", nifti_wd)):
        if name == "nifti":
            # the twin resamples onto the very grid the DICOM run's median gave: N4 is
            # sensitive to a 1e-8 mm change of the target spacing (the NIfTI header's
            # float32 spacing against the DICOM positions' float64)
            cfg = _config()
            cfg["preprocess"]["spacing"] = _qc(dicom_wd, CASES[0])["output_spacing"]
            cfg["segmentation"] = {"method": "readers"}  # the reader's features only
            make_workdir(wd, cfg)
        start = time.monotonic()
        proc = run_snakemake(wd, *TARGETS)
        took[name] = time.monotonic() - start
        assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    print(f"\nDICOM center: {took['dicom']:.0f} s, NIfTI twin: {took['nifti']:.0f} s")
    return {"dicom": dicom_wd, "nifti": nifti_wd, "studies": studies}


def _table(wd: Path) -> pd.DataFrame:
    return pd.read_parquet(wd / f"results/features/raw/{CENTER}.parquet")


def _qc(wd: Path, case: str) -> dict:
    return json.loads(case_file(wd, case, SEQ, "qc.json").read_text())


def test_every_dicom_case_gets_in(runs):
    wd = runs["dicom"]
    excluded = pd.read_csv(wd / "results/cohort/excluded.tsv", sep="\t", dtype=str)
    assert excluded.empty, excluded.to_string()
    table = _table(wd)
    assert list(table.index) == sorted(CASES)
    feats = [c for c in table.columns if c.startswith(f"{SEQ}__")]
    assert len(feats) > 90 and np.isfinite(table[feats].to_numpy()).all()
    assert (wd / "results/report/report.html").is_file()


def test_the_t1_series_and_the_gtv_are_read(runs):
    """The input the DICOM run read is the T1 (rescale applied, not the second
    series), on the NIfTI's grid; the GTV (not the Body ROI) has the volume of the
    original mask."""
    wd, table = runs["dicom"], _table(runs["dicom"])
    for case in CASES:
        got, want = _qc(wd, case), _qc(runs["nifti"], case)
        np.testing.assert_allclose(got["input_size"], want["input_size"])
        np.testing.assert_allclose(got["input_spacing"], want["input_spacing"], rtol=1e-6)
        np.testing.assert_allclose(got["input_origin"], want["input_origin"], atol=1e-4)
        assert got["percentiles_before"].keys() == want["percentiles_before"].keys()
        for key, value in want["percentiles_before"].items():
            assert got["percentiles_before"][key] == pytest.approx(value, abs=1e-3), key
        assert got["output_spacing"] == want["output_spacing"]
        mask = runs["studies"][case]["mask"]
        voxels = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
        expected = voxels * float(np.prod(mask.GetSpacing()))
        volume = table.loc[case, f"{SEQ}__original_shape_VoxelVolume"]
        assert volume == pytest.approx(expected, rel=0.10), (case, volume, expected)


def test_median_spacing_is_read_from_the_studies(runs):
    """preprocess.spacing: median over the DICOM studies (each series picked by the
    case's settings) is the median of the NIfTI originals' spacings."""
    from radstudy.preprocess import median_spacing

    want = median_spacing([STS / c / "MR_T1_image.nii.gz" for c in CASES])
    got = _qc(runs["dicom"], CASES[0])["output_spacing"]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_features_equal_those_from_nifti(runs):
    """Same voxels in, same features out: shape exactly; first-order and texture
    features to within what float32 rounding of the geometry moves (a voxel's
    intensity by ~1e-4 after N4 and z-score, now and then across a bin edge), relative
    to the feature's largest value over the cases (the z-scored mean is ~1e-8)."""
    dicom, nifti = _table(runs["dicom"]), _table(runs["nifti"])
    assert list(dicom.index) == list(nifti.index) and list(dicom.columns) == list(nifti.columns)
    feats = [c for c in dicom.columns if c.startswith(f"{SEQ}__")]
    diff = (dicom[feats] - nifti[feats]).abs().max()
    scale = nifti[feats].abs().max()
    for kind, rtol in (("shape", 0.0), ("firstorder", 1e-4), ("", 2e-3)):
        cols = [c for c in feats if f"_{kind}_" in c or not kind]
        off = diff[cols][diff[cols] > rtol * scale[cols] + 1e-6]
        assert off.empty, (kind, (off / scale[off.index]).to_dict())


def test_pseudo_reader_masks_are_exported_as_dicom_seg(runs):
    from radstudy.casestep import marker_reason
    from radstudy.imageio import read_image_ref
    from radstudy.preprocess import resample_mask_to

    wd, exported = runs["dicom"], 0
    for case in CASES:
        seg = wd / "export/dicom_seg" / case / SEQ / "slic.dcm"
        mask = case_file(wd, case, SEQ, "mask_slic.nii.gz")
        if marker_reason(mask) is not None:  # SLIC found no tumour: the reason travels on
            assert marker_reason(seg) == marker_reason(mask)
            continue
        folder = runs["studies"][case]["folder"]
        image, ref = read_image_ref(folder, case, {"series": {"description": ["*t1*"]}})
        back = dicomio.read_mask(seg, case, image, ref, ["slic"])
        want = resample_mask_to(sitk.ReadImage(str(mask)), image)
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(back) > 0, sitk.GetArrayFromImage(want) > 0
        )
        exported += 1
    assert exported >= 3, exported
    # the DICOM center's ALL target asked for every case's SEG, and nothing else
    segs = (wd / "export/dicom_seg").rglob("*.dcm")
    assert sorted(p.parent.parent.name for p in segs) == sorted(CASES)


def test_the_same_masks_export_as_rtstruct(runs):
    """The export rule's other format, asked for by its files in the same folder:
    each pseudo-reader mask as an RTSTRUCT on the source series, read back."""
    from radstudy.casestep import marker_reason
    from radstudy.imageio import read_image_ref
    from radstudy.preprocess import resample_mask_to

    wd = runs["dicom"]
    cases = [c for c in CASES if marker_reason(case_file(wd, c, SEQ, "mask_slic.nii.gz")) is None]
    assert len(cases) >= 3, cases
    run_snakemake(wd, *(f"export/rtstruct/{c}/{SEQ}/slic.dcm" for c in cases))
    for case in cases:
        folder = runs["studies"][case]["folder"]
        image, ref = read_image_ref(folder, case, {"series": {"description": ["*t1*"]}})
        rt = wd / "export/rtstruct" / case / SEQ / "slic.dcm"
        back = sitk.GetArrayFromImage(dicomio.read_mask(rt, case, image, ref, ["slic"])) > 0
        mask = case_file(wd, case, SEQ, "mask_slic.nii.gz")
        want = sitk.GetArrayFromImage(resample_mask_to(sitk.ReadImage(str(mask)), image)) > 0
        dice = 2 * (back & want).sum() / (back.sum() + want.sum())
        assert dice >= 0.98, (case, dice)  # polygon contours through pixel centres


def _texts(path: Path):
    """The bytes of a file, decompressed and decoded where it is gzip or parquet."""
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        yield str(table.schema.metadata).encode()
        yield table.to_pandas().to_csv().encode()


def _hits(root: Path, skip=()) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(path.is_relative_to(root / s) for s in skip):
            continue
        for text in _texts(path):
            hits += [
                f"{path.relative_to(root)}: {s}"
                for s in IDENTIFIERS
                if s.encode() in text or s.encode("utf-16-le") in text
            ]
    return sorted(set(hits))


def test_no_patient_string_reaches_an_output(runs):
    """Issue 18 item 4: PatientName, PatientID, PatientBirthDate, AccessionNumber and
    InstitutionName are in every input file (image slices and RTSTRUCT) and in no file
    the run wrote."""
    wd = runs["dicom"]
    study = runs["studies"][CASES[0]]
    inputs = set(_hits(study["folder"]))
    for name in ("series1/T1_TSE_AX_000.dcm", "series2/t2_stir_ax_000.dcm"):
        assert {f"{name}: {s}" for s in IDENTIFIERS} <= inputs, name
    # rt-utils copies the patient module into the RTSTRUCT (not the accession, institution)
    assert {f"rtstruct.dcm: {s}" for s in IDENTIFIERS[:5]} <= inputs
    written = [d for d in ("results", "logs", ".snakemake", "benchmarks") if (wd / d).is_dir()]
    assert {"results", "logs", ".snakemake"} <= set(written)
    assert any((wd / "results").rglob("*.png")) and any((wd / "results").rglob("*.html"))
    outputs = [h for d in written for h in _hits(wd / d)]
    assert outputs == [], outputs[:20]
    # the scan reads parquet and gzip: a feature table and a prepared image were read
    assert any((wd / "results/features/raw").glob("*.parquet"))
