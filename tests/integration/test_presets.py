"""The five study presets: valid configs, shaped like their studies, and a DAG that builds."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from radstudy.features import params_path

from .conftest import REPO, run_snakemake

PRESETS = sorted((REPO / "studies").glob("*.yaml"))
SCHEMA = REPO / "config.schema.yaml"


def _load(path: Path) -> dict:
    cfg = yaml.safe_load(path.read_text())
    validate(cfg, str(SCHEMA))
    return cfg


def test_there_are_five_presets():
    assert [p.stem for p in PRESETS] == [
        "hcc_early_recurrence",
        "hepatoblastoma_dlbr",
        "hepatoblastoma_segmentation",
        "neuroblastoma_highrisk_mri",
        "neuroblastoma_surgical_risk",
    ]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_is_valid_and_consistent(path):
    cfg = _load(path)
    params_path(cfg["features"]["params"])  # the pyradiomics params file exists
    for endpoint, models in cfg["models"].items():
        assert endpoint in cfg["endpoints"]
        for spec in models.values():
            if "deep" in spec["groups"]:
                assert cfg["deep"]["enabled"]


def test_presets_shaped_like_their_studies():
    def sizes(name):
        spec = _load(REPO / "studies" / f"{name}.yaml")["synthetic"]["spec"]
        return {c["name"]: (c["n"], c["role"]) for c in spec["centers"]}

    assert sizes("neuroblastoma_highrisk_mri") == {"A": (32, "train"), "B": (14, "external")}
    assert sum(n for n, _ in sizes("hcc_early_recurrence").values()) == 165
    assert sum(n for n, _ in sizes("neuroblastoma_surgical_risk").values()) == 74
    assert sizes("hepatoblastoma_dlbr")["H3"] == (32, "external")


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_dag_builds(tmp_path, path):
    """Dry-run of the preset on a scaled-down synthetic cohort of the same shape."""
    cfg = copy.deepcopy(_load(path))
    cfg["cohort"]["sheet"] = "data/cases.tsv"
    spec = cfg["synthetic"]["spec"]
    spec["fov_mm"] = 32.0
    spec["centers"] = [{**c, "n": 4} for c in spec["centers"]]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = run_snakemake(tmp_path, "--dry-run", "--quiet", "rules").stdout
    assert "render_report" in out and "fit_model" in out
    if cfg["segmentation"]["method"] == "slic_fcm":
        assert "segment_slic_fcm" in out
    if cfg["deep"]["enabled"]:
        assert "extract_deep" in out
    if cfg["preprocess"]["normalization"] == "nyul":
        assert "fit_nyul" in out
