"""The study config: one source of defaults (the schema), unknown keys and bad values as
one-line errors naming the key, cross-key checks, params subtrees, code stamps."""

import inspect
import shutil
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from radstudy import config as rc
from radstudy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCHEMA = rc.load_schema()
KEYWORDS = {
    "$schema", "$defs", "$ref", "type", "default", "description", "properties",
    "additionalProperties", "required", "items", "enum", "const", "oneOf", "anyOf",
    "if", "then", "else", "minItems", "maxItems", "minimum", "maximum",
    "exclusiveMinimum", "pattern", "propertyNames", "minProperties", "uniqueItems",
    "minLength",
}  # fmt: skip
MINIMAL = {
    "cohort": {"sheet": "cases.tsv", "sequences": ["T2"], "readers": ["R1"]},
    "endpoints": {"rec": {"type": "binary", "column": "label"}},
    "models": {"rec": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}},
}

RM1 = {**MINIMAL["cohort"], "reference_reader": "R1"}


def _full(cfg: dict) -> dict:
    out = rc.with_defaults(cfg)
    out["cohort"].setdefault("reference_reader", "R1")
    if out["cohort"]["reference_reader"] == "":
        out["cohort"]["reference_reader"] = out["cohort"]["readers"][0]
    return out


def _error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as err:
        rc.check_config(cfg, SCHEMA)
        rc.check_semantics(rc.with_defaults(cfg))
    return str(err.value).splitlines()[0]


# ------------------------------------------------------------------------- the schema
def _walk(node, path=()):
    if isinstance(node, dict):
        if path and path[-1] in ("properties", "$defs"):
            for key, sub in node.items():
                yield from _walk(sub, (*path, key))
            return
        yield path, node
        for key, sub in node.items():
            if key not in ("default", "description", "enum", "const", "required"):
                yield from _walk(sub, (*path, key))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _walk(sub, (*path, i))


def test_schema_uses_only_json_schema_keywords():
    # an unquoted comma in a YAML flow mapping cuts a description into a bogus key
    bad = [(p, k) for p, node in _walk(SCHEMA) for k in node if k not in KEYWORDS]
    assert bad == []


def test_every_object_rejects_unknown_keys_and_every_key_is_documented():
    for path, node in _walk(SCHEMA):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
        if path and path[-2] == "properties" and "if" not in path:
            assert "description" in node or "$ref" in node or "properties" in node, path


def test_minimal_config_gets_the_schema_defaults_as_snakemake_fills_them():
    ours = rc.with_defaults(MINIMAL)
    theirs = rc.unshare(MINIMAL)
    validate(theirs, str(rc.SCHEMA_PATH))  # Snakemake's own default filling
    assert ours == rc.unshare(theirs)
    assert ours["evaluation"] == {
        "cv": {"n_splits": 5, "n_repeats": 2, "fold_column": ""},
        "bootstrap": 1000,
        "threshold": "youden",
        "shuffled_null": True,
        "loco": True,
        "fail_on_null": False,
    }
    assert ours["cohort"]["image_column"] == "image_{seq}"
    assert list(ours["selection"]) == ["variance", "univariate", "correlation", "lasso"]
    spec = ours["models"]["rec"]["lr"]
    assert spec["smote"] is False and spec["classifier"]["inner_cv"] == 3
    assert ours["deep"]["enabled"] is False and "endpoint" not in ours["deep"]


def test_defaults_are_not_shared_between_map_entries():
    cfg = rc.with_defaults(
        {**MINIMAL, "models": {"rec": {m: {"groups": ["radiomics"]} for m in ("a", "b")}}}
    )
    cfg["selection"]["variance"]["threshold"] = 1.0
    assert rc.with_defaults(MINIMAL)["selection"]["variance"]["threshold"] == 1e-8


def test_selection_step_defaults_are_the_estimators_defaults():
    from radstudy.selection import STEPS

    steps = SCHEMA["$defs"]["selection"]["properties"]
    assert set(steps) == set(STEPS) - {"icc"}
    for name, sub in steps.items():
        sig = inspect.signature(STEPS[name])
        for key, prop in sub["properties"].items():
            if key == "enabled":
                continue
            default = sig.parameters[key].default
            want = list(default) if isinstance(default, tuple) else default
            assert prop["default"] == want, f"{name}.{key}"


def test_module_defaults_agree_with_the_schema():
    from radstudy import deep, segment

    for section, module_defaults in (("segmentation", segment.DEFAULTS), ("deep", deep.DEFAULTS)):
        props = SCHEMA["properties"][section]["properties"]
        for key in set(props) & set(module_defaults):
            if "default" in props[key] and module_defaults[key] is not None:
                assert props[key]["default"] == module_defaults[key], f"{section}.{key}"


@pytest.mark.parametrize(
    "path", [REPO / "config.yaml", *sorted((REPO / "studies").glob("*.yaml"))], ids=lambda p: p.stem
)
def test_demo_and_presets_are_valid(path):
    cfg = yaml.safe_load(path.read_text())
    rc.check_config(cfg, SCHEMA)
    rc.check_semantics(rc.with_defaults(cfg))


# ---------------------------------------------------------------- one-line errors
@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"evalution": {}},
            "config key evalution is not known; did you mean evaluation?",
        ),
        (
            {"evaluation": {"bootsrap": 500}},
            "config key evaluation.bootsrap is not known; did you mean bootstrap?",
        ),
        (
            {"models": {"rec": {"lr": {"groups": ["radiomics"], "clasifier": {}}}}},
            "config key models.rec.lr.clasifier is not known; did you mean classifier?",
        ),
        (
            {"selection": {"lasso": {"cv": 5, "max_feature": 3}}},
            "config key selection.lasso.max_feature is not known; did you mean max_features?",
        ),
        (
            {"evaluation": {"bootstrap": "many"}},
            "config key evaluation.bootstrap: 'many' is not of type 'integer'",
        ),
        (
            {"deep": {"enabled": True}},
            "config key deep: 'endpoint' is a required property",
        ),
        (
            {"cohort": {**MINIMAL["cohort"], "reference_reader": "R9"}},
            "config key cohort.reference_reader: 'R9' is not one of cohort.readers (R1)",
        ),
        (
            {"cohort": {**RM1, "series": {"T1": {"description": ["t1*"]}}}},
            "config key cohort.series.T1: 'T1' is not one of cohort.sequences (T2)",
        ),
        (
            {"cohort": {**RM1, "roi": {"R2": ["GTV"]}}},
            "config key cohort.roi.R2: 'R2' is not one of cohort.readers (R1)",
        ),
        (
            {"cohort": {**RM1, "roi": {"organ": ["Liver"]}}},
            "config key cohort.roi.organ: no organ mask (cohort.organ_mask_column is empty)",
        ),
        (
            {
                "cohort": {
                    **RM1,
                    "organ_mask_column": "mask_liver",
                    "roi": {"R1": ["GTV"], "Liver": ["liver"]},
                }
            },
            "config key cohort.roi.Liver: 'Liver' is not one of cohort.readers or organ "
            "(R1, organ)",
        ),
        (
            {"segmentation": {"export": "dicom_seg"}},
            "config key segmentation.export: exports the pseudo-readers' masks; set "
            "segmentation.method to slic_fcm or nnunet",
        ),
        (
            {"models": {"rec": {"lr": {"groups": ["radiomics"]}}}},
            "config key models.rec.lr: binary endpoint 'rec' needs a classifier",
        ),
        (
            {"models": {"pfs": {"lr": {"groups": ["radiomics"], "cox": {}}}}},
            "config key models.pfs: no endpoint 'pfs' (endpoints: rec)",
        ),
        (
            {"harmonization": {"covariates": ["sex"]}},
            "config key harmonization.covariates: 'sex' is not one of cohort.clinical",
        ),
        (
            {"deep": {"enabled": True, "endpoint": "os"}},
            "config key deep.endpoint: 'os' is not one of the endpoints (rec)",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(change, message):
    cfg = {**MINIMAL, "cohort": {**MINIMAL["cohort"], "reference_reader": "R1"}, **change}
    assert _error(cfg).startswith(message)


def test_dicom_series_and_roi_keys_name_sequences_and_masks():
    cohort = {
        **MINIMAL["cohort"],
        "reference_reader": "R1",
        "organ_mask_column": "mask_liver",
        "series": {"T2": {"description": ["*t2*"], "uid_column": "uid_T2"}},
        "roi": {"R1": ["GTV", 1], "organ": ["Liver"]},
    }
    ok = {**MINIMAL, "cohort": cohort}
    rc.check_config(ok, SCHEMA)
    rc.check_semantics(rc.with_defaults(ok))


def test_unknown_key_lists_the_valid_keys_where_it_is():
    line = _error({**MINIMAL, "evaluation": {"zzz": 1}})
    assert "valid keys in evaluation: cv, bootstrap, threshold, shuffled_null, loco" in line


def test_report_clinical_labels_name_clinical_columns():
    cohort = {**RM1, "clinical": ["age", "sex"]}
    ok = {**MINIMAL, "cohort": cohort, "report": {"clinical_labels": {"sex": {0: "f", 1: "m"}}}}
    rc.check_config(ok, SCHEMA)
    rc.check_semantics(rc.with_defaults(ok))
    bad = {**ok, "report": {"clinical_labels": {"gender": {0: "f"}}}}
    assert _error(bad) == (
        "config key report.clinical_labels.gender: 'gender' is not one of cohort.clinical "
        "(age, sex)"
    )
    none = {**MINIMAL, "cohort": RM1, "report": {"clinical_labels": {"sex": {0: "f"}}}}
    assert _error(none).startswith(
        "config key report.clinical_labels.sex: 'sex' is not one of cohort.clinical (none)"
    )


# ----------------------------------------------------------------- params subtrees
def test_subtree_holds_only_the_named_keys():
    cfg = _full(MINIMAL)
    sub = rc.subtree(cfg, "seed", "endpoints.rec", "evaluation.cv")
    assert sub == {
        "seed": 42,
        "endpoints": {"rec": {"type": "binary", "column": "label"}},
        "evaluation": {"cv": {"n_splits": 5, "n_repeats": 2, "fold_column": ""}},
    }
    sub["evaluation"]["cv"]["n_splits"] = 9  # a copy: the config is untouched
    assert cfg["evaluation"]["cv"]["n_splits"] == 5


# ------------------------------------------------------------------- code stamps
def test_code_files_follow_the_scripts_imports():
    pkg = REPO / "scripts" / "radstudy"
    names = {p.name for p in rc.code_files(REPO / "scripts" / "extract_radiomics.py", pkg)}
    assert {"features.py", "logs.py", "casestep.py", "__init__.py"} <= names
    assert "report.py" not in names and "models.py" not in names
    fit = {p.name for p in rc.code_files(REPO / "scripts" / "fit_model.py", pkg)}
    assert {"stages.py", "models.py", "selection.py", "harmonize.py"} <= fit


def test_code_stamp_changes_with_the_modules_a_script_runs(tmp_path):
    scripts = tmp_path / "scripts"
    shutil.copytree(REPO / "scripts", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    pkg = scripts / "radstudy"
    before = rc.code_stamp(scripts / "extract_radiomics.py", pkg)
    (pkg / "report.py").write_text((pkg / "report.py").read_text() + "\n# unrelated\n")
    assert rc.code_stamp(scripts / "extract_radiomics.py", pkg) == before
    (pkg / "features.py").write_text((pkg / "features.py").read_text() + "\n# changed\n")
    assert rc.code_stamp(scripts / "extract_radiomics.py", pkg) != before


def test_harmonization_covariates_need_a_group_that_preserves_them():
    clinical = {**MINIMAL["cohort"], "reference_reader": "R1", "clinical": ["sex"]}
    cfg = {**MINIMAL, "cohort": clinical, "harmonization": {"covariates": ["sex"]}}
    assert _error(cfg).startswith(
        "config key harmonization.covariates: no group preserves them: set "
        "harmonization.groups.radiomics (or deep, clinical) to combat_covariates"
    )
    ok = {**cfg, "harmonization": {"covariates": ["sex"], "groups": {"deep": "combat_covariates"}}}
    rc.check_config(ok, SCHEMA)
    rc.check_semantics(rc.with_defaults(ok))
    assert "harmonization.groups" in _error(
        {**MINIMAL, "harmonization": {"groups": {"shape": "combat"}}}
    )


def test_segmentation_method_reads_as_words_in_the_report():
    from radstudy.config import segmentation_label

    assert segmentation_label({"method": "readers"}) == "reader masks"
    both = {
        "method": ["slic_fcm", "nnunet"],
        "nnunet_model": "",
        "nnunet_train": True,
        "nnunet_configuration": "2d",
        "nnunet_trainer": "nnUNetTrainer_5epochs",
        "nnunet_folds": ["all"],
    }
    assert segmentation_label(both) == (
        "reader masks + SLIC superpixels + fuzzy c-means + nnU-Net (trained in the study on "
        "the training cases: 2d, nnUNetTrainer_5epochs, folds all)"
    )
    ready = {**both, "method": "nnunet", "nnunet_model": "models/liver"}
    assert segmentation_label(ready) == "reader masks + nnU-Net (ready model models/liver)"
