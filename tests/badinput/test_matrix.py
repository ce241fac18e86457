"""The bad-input matrix: every bad sheet, config, clinical value, image or mask gives
one clear line (docs/bad_input.md lists the cases and their outcome).

A case stops the run (ConfigError, naming the row / case, the column or config key
and the problem) or excludes one case (the reason the per-case step writes into its
exclusion marker). Everything here runs without Snakemake: sheets and configs through
load_cohort / check_config / check_semantics, images and masks through the step of
rule prepare_image (case_step_reason around preprocess.prepare_case), tiny
SimpleITK images on disk.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radstudy import config as rc
from radstudy.casestep import case_step_reason
from radstudy.cohort import load_cohort
from radstudy.errors import CaseError, ConfigError
from radstudy.preprocess import prepare_case

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "rules" / "schemas" / "cases.schema.yaml"
DOC = REPO / "docs" / "bad_input.md"


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


# ------------------------------------------------------------------ cohort sheet
def _cfg(**endpoints) -> dict:
    return rc.with_defaults(
        {
            "cohort": {
                "sheet": "cases.tsv",
                "sequences": ["T2"],
                "readers": ["R1"],
                "reference_reader": "R1",
                "clinical": ["age", "sex"],
            },
            "endpoints": {
                "rec": {"type": "binary", "column": "label", **endpoints.get("rec", {})},
                "efs": {"type": "survival", "time": "t", "event": "e", **endpoints.get("efs", {})},
            },
        }
    )


def _sheet(tmp_path: Path, files: bool = True, **changes) -> Path:
    """A four-case sheet (centers A and B, three training cases) whose files exist."""
    rows = {
        "case_id": ["c1", "c2", "c3", "c4"],
        "center": ["A", "A", "B", "B"],
        "split": ["train", "train", "train", "test"],
        "image_T2": [f"img/c{i}.nii.gz" for i in range(1, 5)],
        "mask_R1": [f"mask/c{i}.nii.gz" for i in range(1, 5)],
        "age": ["10", "12", "7", "5"],
        "sex": ["0", "1", "1", "0"],
        "label": ["0", "1", "1", "0"],
        "t": ["3.5", "10", "7", "1"],
        "e": ["1", "0", "1", "1"],
    }
    rows.update(changes)
    df = pd.DataFrame(rows)
    sheet_dir = tmp_path / "study"
    for col in ("image_T2", "mask_R1"):
        for name in filter(None, df[col]):
            path = sheet_dir / name
            if files and ".." not in name:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
    sheet_dir.mkdir(exist_ok=True)
    path = sheet_dir / "cases.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


# (id, sheet changes, endpoint changes, expected fragment of the error's one line)
SHEET_ERRORS = [
    ("duplicate-ids", {"case_id": ["c1", "c1", "c3", "c4"]}, {}, "duplicated case_id(s): c1"),
    (
        "id-with-space",
        {"case_id": ["c 1", "c2", "c3", "c4"]},
        {},
        "row 2 (case c 1), column 'case_id': 'c 1' is not allowed: letters, digits, _ . - only",
    ),
    (
        "id-with-slash",
        {"case_id": ["a/b", "c2", "c3", "c4"]},
        {},
        "row 2 (case a/b), column 'case_id': 'a/b' is not allowed: letters, digits, _ . - only",
    ),
    (
        "id-dot-dot",
        {"case_id": ["..", "c2", "c3", "c4"]},
        {},
        "column 'case_id': '..' is not allowed: letters, digits, _ . - only, starting with a "
        "letter or digit (ids become file names)",
    ),
    (
        "id-unicode",
        {"case_id": ["cé", "c2", "c3", "c4"]},
        {},
        "row 2 (case cé), column 'case_id': 'cé' is not allowed",
    ),
    (
        "id-html",  # markup cannot reach the report through an id (nor a center)
        {"case_id": ["<script>alert(1)</script>", "c2", "c3", "c4"]},
        {},
        "row 2 (case <script>alert(1)</script>), column 'case_id': '<script>alert(1)</script>' "
        "is not allowed: letters, digits, _ . - only",
    ),
    (
        "id-empty",
        {"case_id": ["", "c2", "c3", "c4"]},
        {},
        "row 2 (case None), column 'case_id': the cell is empty (every case needs a case_id)",
    ),
    (
        "center-with-slash",
        {"center": ["A/x", "A", "B", "B"]},
        {},
        "row 2 (case c1), column 'center': 'A/x' is not allowed: letters, digits, _ - only",
    ),
    (
        "center-html",
        {"center": ["<b>A</b>", "A", "B", "B"]},
        {},
        "row 2 (case c1), column 'center': '<b>A</b>' is not allowed: letters, digits, _ - only",
    ),
    (
        "center-empty",
        {"center": ["A", "", "B", "B"]},
        {},
        "row 3 (case c2), column 'center': the cell is empty (every case needs a center)",
    ),
    (
        "split-unknown",
        {"split": ["train", "tst", "train", "test"]},
        {},
        "row 3 (case c2), column 'split': 'tst' is not one of ['train', 'test', 'external']",
    ),
    (
        "time-inf",
        {"t": ["inf", "10", "7", "1"]},
        {},
        "row 2 (case c1), column 't' (outcome efs): inf is not a finite number",
    ),
    (
        "time-negative",
        {"t": ["3.5", "-1", "7", "1"]},
        {},
        "row 3 (case c2), column 't': -1 is less than the minimum of 0",
    ),
    (
        "time-text",
        {"t": ["3.5", "10", "soon", "1"]},
        {},
        "row 4 (case c3), column 't' (outcome efs): 'soon' is not a number",
    ),
    (
        "label-not-0-1",
        {"label": ["0", "2", "1", "0"]},
        {},
        "row 3 (case c2), column 'label': '2' is not 0 or 1 (values: 0, 1, 2); name the "
        "positive value with endpoints.rec.positive",
    ),
    (
        "events-1-2-without-positive",
        {"e": ["2", "1", "2", "1"]},
        {},
        "row 2 (case c1), column 'e': '2' is not 0 or 1 (values: 1, 2); name the positive "
        "value with endpoints.efs.positive",
    ),
    (
        "events-yes-no-without-positive",
        {"e": ["yes", "no", "yes", "no"]},
        {},
        "row 2 (case c1), column 'e': 'yes' is not 0 or 1 (values: no, yes); name the "
        "positive value with endpoints.efs.positive",
    ),
    (
        "positive-not-in-column",
        {"e": ["yes", "no", "yes", "no"]},
        {"efs": {"positive": "dead"}},
        "endpoints.efs.positive is 'dead' but column 'e' has only no, yes",
    ),
    (
        "three-event-values-with-positive",
        {"e": ["yes", "no", "unknown", "no"]},
        {"efs": {"positive": "yes"}},
        "column 'e' (endpoint efs) has 3 values (no, unknown, yes); a binary outcome has two",
    ),
    (
        "clinical-text-column",
        {"sex": ["M", "F", "F", "M"]},
        {},
        "row 2 (case c1), column 'sex' (clinical): 'M' is not a number (4 text cells in the "
        "column); encode categories as numbers",
    ),
    (
        "clinical-one-text-cell",
        {"age": ["10", "ten", "7", "5"]},
        {},
        "row 3 (case c2), column 'age' (clinical): 'ten' is not a number; encode categories "
        "as numbers",
    ),
    (
        "clinical-inf",
        {"age": ["10", "12", "-inf", "5"]},
        {},
        "row 4 (case c3), column 'age' (clinical): -inf is not a finite number",
    ),
    (
        "all-training-cases-one-class",
        {"label": ["1", "1", "1", "0"]},
        {},
        "endpoint rec: every training case with a value in column 'label' has 1 (3 cases); "
        "a binary endpoint needs both classes among the training cases",
    ),
    (
        "no-training-case-labelled",
        {"label": ["", "", "", "1"]},
        {},
        "endpoint rec: no training case has a value in column 'label'",
    ),
    (
        "no-event-in-training",
        {"e": ["0", "0", "0", "1"]},
        {},
        "endpoint efs: no training case has an event (column 'e' is 0 in all 3 cases with a value)",
    ),
    (
        "no-training-rows",
        {"split": ["test", "test", "external", "external"]},
        {},
        "no row has split 'train'; nothing to fit on",
    ),
]


@pytest.mark.parametrize(
    ("changes", "endpoints", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in SHEET_ERRORS],
)
def test_sheet_error_is_one_line(tmp_path, changes, endpoints, expected):
    with pytest.raises(ConfigError) as err:
        load_cohort(_sheet(tmp_path, **changes), _cfg(**endpoints), SCHEMA)
    assert expected in one_line(str(err.value))


def test_missing_image_file_names_row_column_and_path(tmp_path):
    """image-missing: a path the sheet gives must exist (a typo, an unmounted drive)."""
    sheet = _sheet(tmp_path)
    (sheet.parent / "img" / "c2.nii.gz").unlink()
    with pytest.raises(ConfigError) as err:
        load_cohort(sheet, _cfg(), SCHEMA)
    want = f"row 3 (case c2), column 'image_T2': {sheet.parent / 'img/c2.nii.gz'} does not exist"
    assert want in one_line(str(err.value))


def test_missing_files_are_counted(tmp_path):
    """image-missing, several: the first one named, the rest counted (and listed below)."""
    with pytest.raises(ConfigError) as err:
        load_cohort(_sheet(tmp_path, files=False), _cfg(), SCHEMA)
    first = str(err.value).splitlines()[0]
    assert "row 2 (case c1), column 'image_T2'" in first and first.endswith("(+7 more)")


def test_path_outside_the_sheet_folder_is_resolved(tmp_path):
    """image-dotdot-path: '..' is allowed (as an absolute path is) and resolved; a file
    that is not there is named by its resolved path."""
    outside = tmp_path / "elsewhere" / "c1.nii.gz"
    outside.parent.mkdir()
    outside.touch()
    images = ["../elsewhere/c1.nii.gz", "img/c2.nii.gz", "img/c3.nii.gz", "img/c4.nii.gz"]
    cases, _ = load_cohort(_sheet(tmp_path, image_T2=images), _cfg(), SCHEMA)
    assert cases.set_index("case_id").loc["c1", "image_T2"] == str(outside)
    images[0] = "../../nowhere/c1.nii.gz"
    with pytest.raises(ConfigError) as err:
        load_cohort(_sheet(tmp_path, image_T2=images), _cfg(), SCHEMA)
    assert f"column 'image_T2': {tmp_path.parent / 'nowhere/c1.nii.gz'} does not exist" in (
        one_line(str(err.value))
    )


# (id, sheet changes, endpoint changes, check of the loaded cases)
SHEET_ACCEPTED = [
    ("time-zero", {"t": ["0", "10", "7", "1"]}, {}, lambda c: c.loc["c1", "t"] == 0),
    ("events-1-2-with-positive", {"e": ["2", "1", "2", "1"]}, {"efs": {"positive": 2}},
     lambda c: list(c["e"]) == [1, 0, 1, 0]),
    ("events-yes-no-with-positive", {"e": ["yes", "no", "yes", "no"]},
     {"efs": {"positive": "yes"}}, lambda c: list(c["e"]) == [1, 0, 1, 0]),
    ("labels-true-false", {"label": ["False", "True", "true", "FALSE"]}, {},
     lambda c: list(c["label"]) == [0, 1, 1, 0]),
    # left out of that endpoint's training only (test_training_case_without_label)
    ("training-case-without-label", {"label": ["", "1", "0", "1"]}, {},
     lambda c: pd.isna(c.loc["c1", "label"]) and len(c) == 4),
    ("center-with-one-case", {"center": ["A", "A", "A", "B"]}, {},
     lambda c: (c["center"] == "B").sum() == 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "endpoints", "check"),
    [pytest.param(*case[1:], id=case[0]) for case in SHEET_ACCEPTED],
)
def test_sheet_case_accepted(tmp_path, changes, endpoints, check):
    cases, excluded = load_cohort(_sheet(tmp_path, **changes), _cfg(**endpoints), SCHEMA)
    assert excluded.empty and check(cases.set_index("case_id", drop=False))


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        pytest.param("missing", "does not exist (config key cohort.sheet)", id="sheet-missing"),
        pytest.param("folder", "is a folder; give a CSV, TSV, parquet or xlsx file",
                     id="sheet-is-a-folder"),
        pytest.param("empty", "is empty", id="sheet-empty"),
        pytest.param("no-column", "missing column(s) mask_R1 (needed by config: mask)",
                     id="sheet-missing-column"),
    ],
)  # fmt: skip
def test_unusable_sheet(tmp_path, what, expected):
    sheet = _sheet(tmp_path)
    if what == "missing":
        sheet.unlink()
    elif what == "folder":
        sheet.unlink()
        sheet.mkdir()
    elif what == "empty":
        sheet.write_text("")
    else:
        pd.read_csv(sheet, sep="\t").drop(columns="mask_R1").to_csv(sheet, sep="\t", index=False)
    with pytest.raises(ConfigError) as err:
        load_cohort(sheet, _cfg(), SCHEMA)
    assert expected in one_line(str(err.value))


def test_training_case_without_label(tmp_path):
    """training-case-without-label: the models' training rows leave it out (logged)."""
    from radstudy.stages import training_xy

    table = pd.DataFrame(
        {"center": ["A", "A", "B", "B"], "split": ["train"] * 3 + ["test"], "f__x": [1.0] * 4},
        index=pd.Index(["c1", "c2", "c3", "c4"], name="case_id"),
    )
    table.to_parquet(tmp_path / "A.parquet")
    sheet = pd.DataFrame({"case_id": ["c1", "c2", "c3", "c4"], "label": [None, 1, 0, 1]})
    sheet.to_csv(tmp_path / "A.tsv", sep="\t", index=False)
    X, y = training_xy([tmp_path / "A.parquet"], [tmp_path / "A.tsv"], _cfg()["endpoints"]["rec"])
    assert list(X.index) == ["c2", "c3"] and list(y) == [1, 0]
    assert X.attrs["no_outcome"] == ["c1"]


# ------------------------------------------------------------------------ config
BASE = {
    "cohort": {"sheet": "cases.tsv", "sequences": ["T2"], "readers": ["R1"]},
    "endpoints": {"rec": {"type": "binary", "column": "label"}},
}
RM1 = {**BASE["cohort"], "reference_reader": "R1"}

CONFIG_ERRORS = [
    ("unknown-reference-reader", {"cohort": {**BASE["cohort"], "reference_reader": "R9"}},
     "config key cohort.reference_reader: 'R9' is not one of cohort.readers (R1)"),
    ("no-reference-reader", {"cohort": BASE["cohort"]},
     "config key cohort.reference_reader: '' is not one of cohort.readers (R1)"),
    ("model-reader-unknown", {"features": {"model_reader": "R7"}},
     "config key features.model_reader: 'R7' is not one of the readers or pseudo-readers (R1)"),
    ("model-reader-pseudo-without-segmentation", {"features": {"model_reader": "slic"}},
     "config key features.model_reader: 'slic' is not one of the readers or pseudo-readers"),
    ("model-spec-names-a-reader",
     {"models": {"rec": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"},
                                "reader": "R2"}}}},
     "config key models.rec.lr.reader is not known (valid keys in models.rec.lr: groups"),
    ("wrong-type-integer", {"evaluation": {"bootstrap": "many"}},
     "config key evaluation.bootstrap: 'many' is not of type 'integer'"),
    ("wrong-type-list", {"cohort": {**RM1, "readers": "R1"}},
     "config key cohort.readers: 'R1' is not of type 'array'"),
    ("wrong-type-boolean", {"harmonization": {"enabled": "yes"}},
     "config key harmonization.enabled: 'yes' is not of type 'boolean'"),
    ("unknown-key", {"cohort": {**RM1, "refernce_reader": "R1"}},
     "config key cohort.refernce_reader is not known; did you mean reference_reader?"),
    ("unknown-top-level-key", {"evalution": {}},
     "config key evalution is not known; did you mean evaluation?"),
    ("unknown-endpoint-type", {"endpoints": {"rec": {"type": "ordinal", "column": "label"}}},
     "config key endpoints.rec.type: 'ordinal' is not one of ['binary', 'survival']"),
    ("survival-endpoint-without-event", {"endpoints": {"os": {"type": "survival", "time": "t"}}},
     "config key endpoints.os: 'event' is a required property"),
    ("covariate-not-clinical",
     {"harmonization": {"covariates": ["sex"], "groups": {"radiomics": "combat_covariates"}}},
     "config key harmonization.covariates: 'sex' is not one of cohort.clinical"),
    ("reader-name-with-space", {"cohort": {**RM1, "readers": ["R 1"]}},
     "config key cohort.readers.0: 'R 1' does not match"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"), [pytest.param(*case[1:], id=case[0]) for case in CONFIG_ERRORS]
)
def test_config_error_is_one_line(change, expected):
    cfg = rc.unshare({**BASE, "cohort": RM1, **change})
    with pytest.raises(ConfigError) as err:
        rc.check_config(cfg, rc.load_schema())
        rc.check_semantics(rc.with_defaults(cfg))
    assert one_line(str(err.value)).startswith(expected)


# ------------------------------------------------------------------ harmonization
def _features(centers: dict[str, int], sex: dict[str, list]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for center, n in centers.items():
        for i in range(n):
            rows.append({"center": center, "clinical__sex": float(sex[center][i])})
    X = pd.DataFrame(rows, index=[f"c{i}" for i in range(len(rows))])
    for j in range(4):
        X[f"radiomics__f{j}"] = rng.normal(size=len(X))
    return X


def _combat(covariates=()):
    from radstudy.stages import combat_from_cfg

    h = rc.with_defaults(BASE)["harmonization"]
    h = {**h, "covariates": list(covariates)}
    if covariates:
        h["groups"] = {**h["groups"], "radiomics": "combat_covariates"}
    return combat_from_cfg({"harmonization": h})


def test_covariate_constant_within_one_center_fits():
    """covariate-constant-in-one-center: the other center's spread estimates its effect."""
    X = _features({"A": 4, "B": 4}, {"A": [0, 0, 0, 0], "B": [0, 1, 0, 1]})
    out = _combat(["sex"]).fit(X).transform(X)
    assert out.shape[0] == 8 and np.isfinite(out.filter(like="radiomics__").to_numpy()).all()


def test_covariate_constant_within_every_center_is_one_line():
    """covariate-constant-in-every-center: confounded with the center (the combat job
    stops with this line)."""
    X = _features({"A": 4, "B": 4}, {"A": [0, 0, 0, 0], "B": [1, 1, 1, 1]})
    with pytest.raises(ValueError) as err:
        _combat(["sex"]).fit(X)
    assert "ComBat covariate 'clinical__sex' is confounded with the center" in one_line(
        str(err.value)
    )


def test_training_center_with_one_case_adjusts_means_only(caplog):
    """center-with-one-case (training): as sva::ComBat, location only, with a warning."""
    X = _features({"A": 5, "B": 1}, {"A": [0] * 5, "B": [0]})
    with caplog.at_level(logging.WARNING):
        combat = _combat().fit(X)
    assert combat.modes() and "single training row" in caplog.text


def test_unseen_center_with_one_case_gets_no_predictions():
    """center-with-one-case (test / external): left out of that center's predictions
    with this reason (stages.predict_center, harmonize_center)."""
    X = _features({"A": 4, "B": 4}, {"A": [0] * 4, "B": [0] * 4})
    combat = _combat().fit(X)
    new = _features({"C": 1}, {"C": [0]})
    with pytest.raises(CaseError) as err:
        combat.transform(new)
    assert "center not seen when ComBat was fitted has 1 row(s); at least 2 are needed" in (
        one_line(str(err.value))
    )


# ----------------------------------------------------------- images and masks
CASE = "c1"


def _image(shape=(6, 10, 12), spacing=(1.0, 1.0, 2.0), array=None, direction=None):
    arr = np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)
    img = sitk.GetImageFromArray(arr if array is None else array)
    if img.GetDimension() == 3:
        img.SetSpacing(spacing)
        if direction:
            img.SetDirection(direction)
    return img


def _mask(shape=(6, 10, 12), value=1, box=(slice(1, 4), slice(2, 6), slice(3, 8)), **geometry):
    arr = np.zeros(shape, np.uint8)
    arr[box] = value
    return _image(shape, array=arr, **geometry)


def _write(img, path: Path, compress=True) -> None:
    sitk.WriteImage(img, str(path), compress)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _nan_image():
    arr = sitk.GetArrayFromImage(_image())
    arr[0, 0, 0], arr[1, 1, 1] = np.nan, np.inf
    return _image(array=arr)


def _truncated_voxels(path: Path) -> None:
    raw = path.with_name("raw.nii")
    _write(_image(), raw, compress=False)
    path.write_bytes(gzip.compress(raw.read_bytes()[:1500]))


def _labels_1_2():
    arr = np.zeros((6, 10, 12), np.uint8)
    arr[1:3, 2:5, 3:6], arr[3:5, 2:5, 3:6] = 1, 2
    return _image(array=arr)


def _nan_mask():
    arr = np.ones((6, 10, 12), np.float32)
    arr.reshape(-1)[::7] = np.nan
    return _image(array=arr)


# id -> (image file name, how the image is written, how the mask is written)
IMAGE_CASES = {
    "image-missing": ("img.nii.gz", lambda p: None, None),
    "image-is-a-folder": ("img_dir", lambda p: p.mkdir(), None),
    "image-empty-file": ("img.nii.gz", lambda p: p.write_bytes(b""), None),
    "image-truncated-gzip": ("img.nii.gz", lambda p: (_write(_image(), p), _truncate(p)), None),
    "image-truncated-voxels": ("img.nii.gz", _truncated_voxels, None),
    "image-truncated-nrrd": (
        "img.nrrd",
        lambda p: (_write(_image(), p, False), _truncate(p, 0.8)),
        None,
    ),
    "image-truncated-mha": (
        "img.mha",
        lambda p: (_write(_image(), p, False), _truncate(p, 0.8)),
        None,
    ),
    "image-not-an-image": ("img.nii.gz", lambda p: p.write_text("case c1, T2\n"), None),
    "image-2d": ("img.nii.gz", lambda p: _write(_image(array=np.ones((10, 12), "f4")), p), None),
    "image-nan-inf-voxels": ("img.nii.gz", lambda p: _write(_nan_image(), p), None),
    "mask-other-grid": ("img.nii.gz", None, lambda p: _write(_mask(shape=(6, 10, 11)), p)),
    "mask-other-spacing": ("img.nii.gz", None, lambda p: _write(_mask(spacing=(1, 1, 3)), p)),
    "mask-other-orientation": (
        "img.nii.gz",
        None,
        lambda p: _write(_mask(direction=(0, 1, 0, 1, 0, 0, 0, 0, -1)), p),
    ),
    "mask-empty": ("img.nii.gz", None, lambda p: _write(_mask(value=0), p)),
    "mask-label-2-only": ("img.nii.gz", None, lambda p: _write(_mask(value=2), p)),
    "mask-nan": ("img.nii.gz", None, lambda p: _write(_nan_mask(), p)),
    "mask-whole-image": ("img.nii.gz", None, lambda p: _write(_mask(box=(slice(None),) * 3), p)),
    "mask-missing": ("img.nii.gz", None, lambda p: None),
}
IMAGE_REASONS = {
    "image-missing": "{image}: file does not exist",
    "image-is-a-folder": "{image}: folder holds no DICOM image series",
    "image-empty-file": "{image}: file is empty (0 bytes)",
    "image-truncated-gzip": "{image}: file is truncated or corrupt (",
    "image-truncated-voxels": "{image}: file is truncated (1148 of 2880 bytes of voxels)",
    "image-truncated-nrrd": "{image}: cannot read image ([nrrd] _nrrdEncodingRaw_read: fread",
    "image-truncated-mha": "{image}: cannot read image (File cannot be read: {image} for",
    "image-not-an-image": "{image}: cannot read image (Unable to determine ImageIO reader",
    "image-2d": "{image}: image is 2D, expected a 3D volume",
    "image-nan-inf-voxels": "{image}: image contains 2 NaN/inf voxels",
    "mask-other-grid": "{mask}: mask size (11, 10, 6) differs from image size (12, 10, 6)",
    "mask-other-spacing": "{mask}: mask spacing (1, 1, 3) differs from image spacing (1, 1, 2)",
    "mask-other-orientation": "{mask}: mask direction (orientation) differs from the image's",
    "mask-empty": "{mask}: mask is empty (no labelled voxel)",
    "mask-label-2-only": "{mask}: mask has labels [2] but not 1 (set preprocess.mask_label)",
    "mask-nan": "{mask}: mask contains NaN voxels",
    "mask-whole-image": "{mask}: mask covers the whole image",
    "mask-missing": "{mask}: file does not exist",
}
PREPARE = {"modality": "CT", "spacing": [1.0, 1.0, 1.0]}  # CT: no N4, quick


def _prepare(tmp_path: Path, image_name="img.nii.gz", image=None, mask=None, masks=("R1",)):
    """The step of rule prepare_image for one case: None or the exclusion reason."""
    image_path, mask_path = tmp_path / image_name, tmp_path / "mask.nii.gz"
    (image or (lambda p: _write(_image(), p)))(image_path)
    (mask or (lambda p: _write(_mask(), p)))(mask_path)
    paths = {r: str(mask_path) if r == "R1" else str(tmp_path / f"{r}.nii.gz") for r in masks}
    out = tmp_path / "out"
    outs = {r: str(out / f"mask_{r}.nii.gz") for r in masks}

    def step():
        prepare_case(
            CASE, "T2", str(image_path), paths, "R1", str(out / "prepared.nii.gz"), outs,
            str(out / "qc.json"), PREPARE,
        )  # fmt: skip

    return case_step_reason(CASE, [], step), image_path, mask_path, out


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_image_or_mask_excludes_the_case(tmp_path, case):
    name, image, mask = IMAGE_CASES[case]
    reason, image_path, mask_path, _ = _prepare(tmp_path, name, image, mask)
    want = f"case {CASE}: " + IMAGE_REASONS[case].format(image=image_path, mask=mask_path)
    assert one_line(reason).startswith(want), reason


def test_good_case_and_multi_label_mask_pass(tmp_path):
    """mask-labels-1-and-2: the ROI is label 1 (preprocess.mask_label), other labels
    are not part of it."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    assert _prepare(tmp_path / "a")[0] is None
    reason, _, _, out = _prepare(tmp_path / "b", mask=lambda p: _write(_labels_1_2(), p))
    assert reason is None
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "mask_R1.nii.gz")))
    assert roi.sum() == 2 * 3 * 3 * 2  # label 1 only, 2 mm slices resampled to 1 mm


def test_bad_mask_of_another_reader_excludes_that_reader_only(tmp_path):
    """mask-other-reader-bad: the case goes on; the reader's mask output is a marker."""
    from radstudy.casestep import marker_reason

    (tmp_path / "R2.nii.gz").write_bytes(b"")
    reason, _, _, out = _prepare(tmp_path, masks=("R1", "R2"))
    assert reason is None
    why = marker_reason(out / "mask_R2.nii.gz")
    assert one_line(why) == f"case {CASE}: {tmp_path / 'R2.nii.gz'}: file is empty (0 bytes)"


def test_one_voxel_mask_is_excluded_at_extraction(tmp_path):
    """mask-one-voxel: prepared, then excluded by the feature extraction (pyradiomics
    needs more than one voxel), naming the reader's mask."""
    from radstudy.features import case_features

    one = (slice(2, 3), slice(3, 4), slice(4, 5))
    reason, _, _, out = _prepare(
        tmp_path,
        image=lambda p: _write(_image(spacing=(1, 1, 1)), p),
        mask=lambda p: _write(_mask(box=one, spacing=(1, 1, 1)), p),
    )
    assert reason is None
    rows, reasons = case_features(
        CASE,
        "T2",
        str(out / "prepared.nii.gz"),
        {"R1": str(out / "mask_R1.nii.gz")},
        {"params": "mri_fast.yaml"},
    )
    assert rows == {}
    assert one_line(reasons["R1"]).startswith(
        f"case {CASE}: {out / 'mask_R1.nii.gz'}: pyradiomics failed: mask only contains 1 "
        "segmented voxel"
    )


# ------------------------------------------------------------------ feature table
FEATURE_TABLES = [
    ("feature-table-duplicate-columns-csv", "t.csv", "case_id,x,x\nc1,1,2\n",
     "duplicated column name(s) x"),
    ("feature-table-duplicate-columns-tsv", "t.tsv", "case_id\tx\tx \nc1\t1\t2\n",
     "duplicated column name(s) x"),
    ("feature-table-duplicate-columns-xlsx", "t.xlsx", None, "duplicated column name(s) x"),
    ("feature-table-duplicate-ids", "t.csv", "case_id,x\nc1,1\nc1,2\n",
     "duplicated case_id(s) c1"),
    ("feature-table-no-id-column", "t.csv", "ID,x\nc1,1\n",
     "no id column 'case_id' (config key cohort.id_column)"),
    ("feature-table-unnamed-column", "t.csv", "case_id,,x\nc1,1,2\n",
     "a column has no name (an index column or a stray delimiter?)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "expected"), [pytest.param(*case[1:], id=case[0]) for case in FEATURE_TABLES]
)
def test_feature_table_error_is_one_line(tmp_path, name, text, expected):
    from radstudy.tables import read_feature_table

    path = tmp_path / name
    if text is None:
        pd.DataFrame([["c1", 1, 2]], columns=["case_id", "x", "x"]).to_excel(path, index=False)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_feature_table(path)
    assert f"feature table {path}: {expected}" in one_line(str(err.value))


# ------------------------------------------------------------------ the document
def test_every_case_is_in_the_document():
    ids = [c[0] for c in SHEET_ERRORS + SHEET_ACCEPTED + CONFIG_ERRORS + FEATURE_TABLES]
    ids += list(IMAGE_CASES) + [
        "image-dotdot-path",
        "sheet-missing",
        "sheet-is-a-folder",
        "sheet-empty",
        "sheet-missing-column",
        "covariate-constant-in-one-center",
        "covariate-constant-in-every-center",
        "mask-labels-1-and-2",
        "mask-other-reader-bad",
        "mask-one-voxel",
    ]
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(), re.M))
    assert sorted(set(ids) - documented) == []
    assert len(ids) == len(set(ids))
