"""The five study presets (studies/*.yaml, see STUDIES.md): valid configs shaped like
their studies, and each one run end to end, alone, on a reduced synthetic cohort.

Each run passes the reduced preset as the ONLY --configfile (the demo config.yaml must
not leak into it) and the assertions check, on the files the workflow wrote, that the
study's own design ran: its models and classifiers, selection steps, readers and ICC
filter, image types, segmentation agreement tables, survival cutoff and nomogram.
The reduction keeps everything that defines a study (params file, mode, selection,
models, readers, repeats, normalisation, segmentation method, center names, roles and
split fractions) and shrinks only what sets the run time: cases per center, field of
view, deep-training epochs, bootstrap replicates, CV repeats (and the shuffled-label
CV, which test_workflow covers).
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from snakemake.utils import validate

from radstudy.features import params_path

from .conftest import REPO, case_file, run_snakemake

PRESETS = sorted((REPO / "studies").glob("*.yaml"))
SCHEMA = REPO / "config.schema.yaml"
DEMO = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))

# cases per center of the reduced runs (enough for every step: SMOTE's 3 neighbours
# and the kNN grid's 5 inside CV folds, 3+ cases for the ICC, events for the Cox models)
REDUCED_N = {
    "hcc_early_recurrence": {"HCC": 16},
    "hepatoblastoma_dlbr": {"H1": 8, "H2": 8, "H3": 6},
    "hepatoblastoma_segmentation": {"S1": 12, "S2": 4},
    "neuroblastoma_highrisk_mri": {"A": 10, "B": 5},
    "neuroblastoma_surgical_risk": {"NB": 16},
}
NNUNET_INSTALLED = importlib.util.find_spec("nnunetv2") is not None
# synthetic-spec extras of the reduced runs: blank AFP / PRETEXT in a few sheet rows
# (H2004, H2008 with seed 2024) so the DLBR inclusion criteria exclude someone
REDUCED_SPEC = {"hepatoblastoma_dlbr": {"missing_fraction": 0.1}}


def _load(path: Path) -> dict:
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate(cfg, str(SCHEMA))
    return cfg


def preset(name: str) -> dict:
    """The preset as written (no schema defaults filled in)."""
    return yaml.safe_load((REPO / "studies" / f"{name}.yaml").read_text(encoding="utf-8"))


def reduced_preset(name: str) -> dict:
    """The preset with a smaller synthetic cohort and cheaper statistics, same design."""
    cfg = preset(name)
    cfg["cohort"]["sheet"] = "data/cases.tsv"
    spec = cfg["synthetic"]["spec"]
    spec["fov_mm"] = 32.0
    sizes = REDUCED_N[name]
    assert sorted(sizes) == sorted(c["name"] for c in spec["centers"])
    spec["centers"] = [{**c, "n": sizes[c["name"]]} for c in spec["centers"]]
    spec.update(REDUCED_SPEC.get(name, {}))
    if cfg.get("deep", {}).get("enabled"):  # same network, one training epoch
        cfg["deep"]["epochs"] = 1
    seg = cfg.get("segmentation", {})
    if "nnunet" in seg.get("method", []) and seg.get("nnunet_train", True):
        # nnU-Net still trained in the study, on the cheapest schedule: 2d, one epoch;
        # skipped (nnunet_train false) where the optional extra is not installed
        seg.update(
            nnunet_configuration="2d",
            nnunet_trainer="nnUNetTrainer_1epoch",
            nnunet_device="cpu",
            nnunet_train=NNUNET_INSTALLED,
        )
    ev = cfg.setdefault("evaluation", {})
    ev["bootstrap"] = 100
    ev["cv"] = {**ev.get("cv", {}), "n_repeats": 1}
    ev["shuffled_null"] = False  # the leakage check has its own test (test_workflow)
    return cfg


# --------------------------------------------------------------------- cheap checks
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
    assert set(cfg["models"]) == set(cfg["endpoints"])  # every endpoint has its models
    # the reduced copy the end-to-end runs use is valid too
    validate(reduced_preset(path.stem), str(SCHEMA))


def _sizes(name):
    spec = _load(REPO / "studies" / f"{name}.yaml")["synthetic"]["spec"]
    return {c["name"]: (c["n"], c["role"]) for c in spec["centers"]}


def test_presets_shaped_like_their_studies():
    assert _sizes("neuroblastoma_highrisk_mri") == {"A": (32, "train"), "B": (14, "external")}
    assert _sizes("hcc_early_recurrence") == {"HCC": (165, "train")}  # single center
    assert _sizes("neuroblastoma_surgical_risk") == {"NB": (74, "train")}
    assert _sizes("hepatoblastoma_dlbr")["H3"] == (32, "external")
    seg = preset("hepatoblastoma_segmentation")
    assert seg["cohort"]["readers"] == ["R1", "R2", "R3"] and not seg["cohort"]["repeats"]
    assert seg["synthetic"]["spec"]["readers"] == ["R1", "R2", "R3"]
    # the study's model: nnU-Net trained in the study (3D), beside SLIC + FCM
    s = seg["segmentation"]
    assert s["method"] == ["slic_fcm", "nnunet"] and s["nnunet_train"] and not s["nnunet_model"]
    assert s["nnunet_configuration"] == "3d_fullres"


def synthetic_splits(spec: dict) -> pd.Series:
    """case_id -> split as the synthetic generator writes it, without rendering images:
    the label comes from each case's latent variables (their draws do not depend on the
    field of view). The end-to-end hcc test checks it against a generated cohort."""
    from radstudy import synth

    spec = synth.merge_spec(spec)
    out = {}
    for center in spec["centers"]:
        latent = [
            synth._latent_case(synth._rng(spec["seed"], center["name"], i, "latent"), 1.0)
            for i in range(int(center["n"]))
        ]
        labels = np.array([int(t["risk"] > synth._LABEL_THRESHOLD) for t in latent])
        split = synth._splits(labels, center, spec)
        out |= {f"{center['name']}{i + 1:03d}": s for i, s in enumerate(split)}
    return pd.Series(out).sort_index()


def test_hcc_split_is_132_train_33_validation():
    counts = synthetic_splits(preset("hcc_early_recurrence")["synthetic"]["spec"])
    assert counts.value_counts().to_dict() == {"train": 132, "test": 33}


def test_surgical_risk_split_is_80_20():
    counts = synthetic_splits(preset("neuroblastoma_surgical_risk")["synthetic"]["spec"])
    counts = counts.value_counts()
    assert counts.sum() == 74 and counts["test"] == pytest.approx(0.2 * 74, abs=1)


# ------------------------------------------------------------------- shared runs
def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class PresetRun:
    """One reduced preset in its own folder: dry run first, then (on demand) the run."""

    def __init__(self, name: str, workdir: Path):
        self.name, self.wd = name, workdir
        self.cfg = reduced_preset(name)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self._dry: str | None = None
        self.proc = None  # the run's CompletedProcess
        self.seconds = float("nan")  # the run's wall time
        self.cpu_seconds = float("nan")  # CPU time of snakemake and its jobs

    def dry_run(self) -> str:
        """Output of ``--dry-run`` (every planned job with its output files)."""
        if self._dry is None:
            self._dry = run_snakemake(self.wd, "--dry-run").stdout
        return self._dry

    def run(self) -> PresetRun:
        """The whole workflow, once; --keep-going so that one failing job leaves the
        other outputs to check (test_preset_runs_end_to_end reports the failure)."""
        if self.proc is None:
            self.dry_run()
            t0, cpu0 = time.monotonic(), _children_cpu()
            self.proc = run_snakemake(self.wd, "--keep-going", check=False)
            self.seconds = time.monotonic() - t0
            self.cpu_seconds = _children_cpu() - cpu0
        return self

    # file helpers
    def tsv(self, rel: str) -> pd.DataFrame:
        return pd.read_csv(self.wd / rel, sep="\t", dtype={"case_id": str})

    def card(self, endpoint: str, model: str) -> dict:
        return json.loads(
            (self.wd / f"results/models/{endpoint}/{model}/card.json").read_text(encoding="utf-8")
        )

    def metrics(self, endpoint: str, model: str) -> pd.DataFrame:
        return self.tsv(f"results/evaluation/{endpoint}/{model}/metrics.tsv")

    def raw(self) -> pd.DataFrame:
        files = sorted((self.wd / "results/features/raw").glob("*.parquet"))
        return pd.concat(pd.read_parquet(p) for p in files).sort_index()

    def report(self) -> str:
        return (self.wd / "results/report/report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> PresetRun, created once per module (each run shared by its tests)."""
    cache: dict[str, PresetRun] = {}

    def get(name: str) -> PresetRun:
        if name not in cache:
            cache[name] = PresetRun(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _value(m: pd.DataFrame, cohort: str, metric: str) -> pd.Series:
    row = m[(m["cohort"] == cohort) & (m["metric"] == metric)]
    assert len(row) == 1, f"no {metric} for cohort {cohort}: {sorted(m['cohort'].unique())}"
    return row.iloc[0]


def _feature_names(run: PresetRun) -> list[str]:
    return [c for c in run.raw().columns if "__" in c and not c.startswith("clinical__")]


def _image_types(features: list[str], seq: str) -> set[str]:
    """pyradiomics image types among ``{seq}__{imagetype}_{class}_{feature}`` columns."""
    return {f[len(seq) + 2 :].split("_")[0] for f in features if f.startswith(f"{seq}__")}


# ----------------------------------------------------------- dry run: only the preset
PLANNED = re.compile(r"results/(?:models|evaluation)/([A-Za-z0-9_]+)/([A-Za-z0-9_]+)/")


def _planned_models(dry: str) -> set[tuple[str, str]]:
    return {(ep, m) for ep, m in PLANNED.findall(dry) if ep != "deep"}


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_dry_run_plans_only_the_presets_models(runs, path):
    """With only the preset as --configfile, no demo endpoint or model is planned."""
    cfg = preset(path.stem)
    dry = runs(path.stem).dry_run()
    own = {(ep, m) for ep, models in cfg["models"].items() for m in models}
    planned = _planned_models(dry)
    assert planned == own, f"planned but not in the preset: {sorted(planned - own)}"
    demo_only = {m for models in DEMO["models"].values() for m in models} - {
        m for models in cfg["models"].values() for m in models
    }
    for name in sorted(demo_only):
        assert f"/{name}/" not in dry, f"demo model {name} planned"
    for ep in sorted(set(DEMO["endpoints"]) - set(cfg["endpoints"])):
        assert f"results/models/{ep}/" not in dry, f"demo endpoint {ep} planned"
    # the preset's own design is planned
    assert "render_report" in dry and "fit_model" in dry
    method = cfg.get("segmentation", {}).get("method", [])
    if "slic_fcm" in method:
        assert "segment_slic_fcm" in dry
    if "nnunet" in method and NNUNET_INSTALLED:
        assert "train_nnunet" in dry and "predict_nnunet" in dry
    assert ("extract_deep" in dry) == bool(cfg.get("deep", {}).get("enabled"))
    assert ("fit_nyul" in dry) == (cfg["preprocess"].get("normalization") == "nyul")
    assert ("fit_combat" in dry) and ("compute_icc" in dry)


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_cohort_tables_carry_no_demo_clinical_columns(runs, path):
    """The cohort tables hold no demo clinical, descriptor or outcome column that the
    preset does not name (the synthetic sheet has them all)."""
    cfg = preset(path.stem)
    run = runs(path.stem).run()  # the cohort tables of the whole run (one Snakemake call)
    c = cfg["cohort"]
    named = set(c.get("clinical", [])) | set(c.get("descriptors", [])) | set(c.get("require", []))
    for ep in cfg["endpoints"].values():
        named |= {ep.get("column"), ep.get("time"), ep.get("event")}
    demo = set(DEMO["cohort"]["clinical"]) | set(DEMO["cohort"]["descriptors"])
    for ep in DEMO["endpoints"].values():
        demo |= {ep.get("column"), ep.get("time"), ep.get("event")}
    foreign = demo - named - {None}
    assert foreign, "nothing to check: the preset names every demo column"
    tables = [run.wd / "results/cohort/cases.tsv"]
    tables += sorted((run.wd / "results/cohort/centers").glob("*.tsv"))
    assert len(tables) == 1 + len(cfg["synthetic"]["spec"]["centers"])
    for table in tables:
        cols = set(pd.read_csv(table, sep="\t", nrows=0).columns)
        assert not cols & foreign, f"{table.name} carries {sorted(cols & foreign)}"


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_runs_end_to_end(runs, path):
    """The reduced preset, alone, runs to its report (within CI's time budget)."""
    run = runs(path.stem).run()
    err = run.proc.stderr
    failed = sorted(set(re.findall(r"Error in rule (\w+):", err)))
    assert run.proc.returncode == 0, f"failed rules {failed}:\n{err[-4000:]}"
    print(f"{path.stem}: {run.seconds:.0f} s wall, {run.cpu_seconds:.0f} s CPU")
    assert (run.wd / "results/report/report.html").stat().st_size > 10_000
    # the reduced cohort, not the study's full size, ran
    sheet = run.tsv("data/cases.tsv")
    assert sheet["center"].value_counts().to_dict() == REDUCED_N[path.stem]


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_feature_tables_carry_only_the_presets_clinical_columns(runs, path):
    """The model-facing tables hold exactly the preset's clinical columns, and every
    planned model (and only those) was fitted, evaluated and reported."""
    cfg = preset(path.stem)
    run = runs(path.stem).run()
    raw = run.raw()
    clinical = {c for c in raw.columns if c.startswith("clinical__")}
    assert clinical == {f"clinical__{c}" for c in cfg["cohort"].get("clinical", [])}
    assert {c.split("__")[0] for c in raw.columns if "__" in c} <= set(
        cfg["cohort"]["sequences"]
    ) | {"clinical"}
    fitted = {
        (p.parent.parent.name, p.parent.name)
        for p in (run.wd / "results/models").glob("*/*/card.json")
    }
    assert fitted == {(ep, m) for ep, models in cfg["models"].items() for m in models}
    for ep, models in cfg["models"].items():
        for m in models:
            assert run.card(ep, m)["study"] == cfg["study"]["name"]


# what each study's report must show (section and figure titles of radstudy.report);
# a tuple: any one of its strings (which one depends on the data, e.g. tableone's test)
REPORT_SHOWS = {
    "hepatoblastoma_dlbr": [
        "missing required value",  # the flow of cases excluded by the inclusion criteria
        "Kaplan-Meier by risk group (cutoff = training median), number at risk under each panel",
        "Multivariable Cox with clinical variables",
        "Nomogram: points per covariate",
        "Selected deep features vs radiological descriptors (Spearman)",
        "Mean Dice (95% CI)",  # the clustered ROI vs the reader
    ],
    "hepatoblastoma_segmentation": [
        "Mean Dice (95% CI)",
        "Volume agreement vs reference",
        "Entropy of the soft output",
    ],
    # 7 models: two figures of each curve kind, every model in one of them
    "hcc_early_recurrence": [
        f"<figcaption>early_recurrence: {kind} curves per cohort, one line per model "
        f"(models {i} of 2)</figcaption>"
        for kind in ("ROC", "calibration", "decision")
        for i in (1, 2)
    ],
    "neuroblastoma_highrisk_mri": [
        "ICC distribution (threshold 0.75)",
        "Cases x selected features (z-scores), clustered",
    ],
    "neuroblastoma_surgical_risk": [
        # Table 1 (tableone) tests sex and age: the test names in its Test column
        # (16 cases: a 2 x 2 table with small counts gets Fisher's exact test)
        ("<td>Chi-squared</td>", "<td>Fisher's exact</td>"),
        ("<td>Welch\u2019s T-test</td>", "<td>Kruskal-Wallis</td>"),  # age normal / skewed
        "ICC distribution (threshold 0.75)",
        "LASSO path and CV error",
        "Confusion matrices",
        "Spearman correlation of the selected features",
    ],
}


def _shows(html: str, expected: str | tuple[str, ...]) -> bool:
    return any(s in html for s in ((expected,) if isinstance(expected, str) else expected))


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_report_shows_the_study(runs, path):
    cfg = preset(path.stem)
    html = runs(path.stem).run().report()
    assert f"<h1>{cfg['study']['name']}</h1>" in html
    for ep, models in cfg["models"].items():
        for m in models:
            assert f"<h3>{ep} / {m}</h3>" in html
    missing = [s for s in REPORT_SHOWS[path.stem] if not _shows(html, s)]
    assert not missing, f"report lacks {missing}"


# --------------------------------------------------------- 1. hepatoblastoma_dlbr
DLBR = "hepatoblastoma_dlbr"


@pytest.fixture(scope="module")
def dlbr(runs) -> PresetRun:
    return runs(DLBR).run()


@pytest.mark.slow
def test_dlbr_cox_score_on_deep_features(dlbr):
    card = dlbr.card("efs", "dlbr_cox")
    assert card["endpoint_spec"]["type"] == "survival"
    assert card["groups"] == ["deep"] and card["steps"][-1] == "model"
    assert "concordance" in card["steps"]
    feats = [f["feature"] for f in card["selected_features"]]
    assert len(feats) == 4 and all("__deep_" in f for f in feats)  # 4 deep features
    assert {f.split("__")[0] for f in feats} <= {"T1", "T2"}
    sel = dlbr.tsv("results/models/efs/dlbr_cox/selection.tsv")
    assert sorted(sel["feature"]) == sorted(feats) and sel["weight"].notna().all()
    # the ResNet reads the SLIC + fuzzy c-means ROI (features.model_reader: slic)
    inputs = re.findall(r"rule extract_deep:\n\s+input: (.*)", dlbr.dry_run())
    assert len(inputs) == 6  # 3 centers x 2 sequences
    # (its batch folders: normalised images and SLIC masks, no reader's prepared masks)
    assert all("/slic" in i and "/prepared" not in i for i in inputs), inputs
    # ResNet34 trained on the training cases, 512 features per sequence
    raw = dlbr.raw()
    for seq in ("T1", "T2"):
        assert sum(c.startswith(f"{seq}__deep_") for c in raw.columns) == 512
        assert (dlbr.wd / f"results/models/deep/{seq}.pt").is_file()


@pytest.mark.slow
def test_dlbr_cutoff_is_training_median_and_km_logrank(dlbr):
    card = dlbr.card("efs", "dlbr_cox")
    preds = pd.concat(
        dlbr.tsv(str(p.relative_to(dlbr.wd)))
        for p in sorted((dlbr.wd / "results/evaluation/efs/dlbr_cox/predictions").glob("*.tsv"))
    )
    train = preds[preds["split"] == "train"]
    assert card["cutoff"] == pytest.approx(train["score"].median(), rel=1e-5)  # %.6g
    # scores are written with 6 significant digits: the case at the median may round
    # to either side of the cutoff
    near = np.isclose(preds["score"], card["cutoff"], rtol=1e-5, atol=0)
    group = np.where(preds["score"] > card["cutoff"], "high", "low")
    assert ((preds["risk_group"] == group) | near).all()
    m = dlbr.metrics("efs", "dlbr_cox")
    for cohort in ("train", "external:H3"):
        p = _value(m, cohort, "logrank_p")["value"]
        assert 0 <= p <= 1
        assert _value(m, cohort, "c_index")["n"] == (preds["split"] == cohort.split(":")[0]).sum()
    curves = pd.read_parquet(dlbr.wd / "results/evaluation/efs/dlbr_cox/curves.parquet")
    km = curves[curves["kind"] == "km"]
    assert {"train", "external:H3"} <= set(km["cohort"]) and {"high", "low"} <= set(km["series"])


@pytest.mark.slow
def test_dlbr_nomogram_with_afp_and_pretext(dlbr):
    card = dlbr.card("efs", "nomogram_dlbr_clinical")
    assert set(card["groups"]) == {"deep", "clinical"}
    covs = set(pd.DataFrame(card["nomogram"]["points"])["covariate"])
    assert {"clinical__afp", "clinical__pretext"} <= covs
    assert any("__deep_" in c for c in covs)
    assert card["nomogram"]["time_point"] > 0 and len(card["nomogram"]["total"]) > 0
    # DLBR independent in a multivariable Cox with the clinical variables, PH tested
    dl = dlbr.card("efs", "dlbr_cox")
    mv = pd.DataFrame(dl["multivariable_cox"])
    assert {"model_score_per_sd", "clinical__afp", "clinical__pretext"} <= set(mv["covariate"])
    assert "model_score_per_sd" in pd.DataFrame(dl["ph_test"])["covariate"].tolist()
    # compared with the clinical model; integrated Brier score reported
    m = dlbr.metrics("efs", "nomogram_dlbr_clinical")
    assert 0 <= _value(m, "train", "ibs")["value"] <= 1
    assert {"train", "external:H3"} <= set(dlbr.metrics("efs", "clinical_cox")["cohort"])


@pytest.mark.slow
def test_dlbr_slic_fcm_roi_nyul_combat_and_flow(dlbr):
    cfg = dlbr.cfg
    assert cfg["segmentation"]["method"] == "slic_fcm"
    # the clustered ROI is checked against the reader's contours
    for seq in ("T1", "T2"):
        pairs = dlbr.tsv(f"results/segmentation/{seq}/dice_pairwise.tsv")
        assert {tuple(r) for r in pairs[["name_a", "name_b"]].to_numpy()} == {("R1", "slic")}
        assert {"ci_low", "ci_high"} <= set(pairs.columns)
        assert (dlbr.wd / f"results/normalisation/nyul_{seq}.json").is_file()
        norm = json.loads(
            case_file(dlbr.wd, "H1001", seq, "normalisation.json").read_text(encoding="utf-8")
        )
        assert norm["method"] == "nyul"
    combat = json.loads((dlbr.wd / "results/features/combat.json").read_text(encoding="utf-8"))
    assert combat["enabled"] and set(combat["centers"]) == {"H1", "H2"}


@pytest.mark.slow
def test_dlbr_inclusion_criteria_exclude_cases_without_afp_or_pretext(dlbr):
    sheet = dlbr.tsv("data/cases.tsv")
    lacking = set(sheet.loc[sheet[["afp", "pretext"]].isna().any(axis=1), "case_id"])
    assert lacking == {"H2004", "H2008"}  # REDUCED_SPEC's blanks
    excluded = dlbr.tsv("results/cohort/excluded.tsv").set_index("case_id")
    assert lacking <= set(excluded.index)
    for case in lacking:
        assert re.fullmatch(r"missing required value '(afp|pretext)'", excluded.loc[case, "reason"])
    assert not lacking & set(dlbr.tsv("results/cohort/cases.tsv")["case_id"])
    assert not lacking & set(dlbr.raw().index)


# ------------------------------------------------- 2. hepatoblastoma_segmentation
SEG = "hepatoblastoma_segmentation"
# the segmentation models beside the readers: nnU-Net (trained in the study) and SLIC + FCM
SEG_MODELS = ["nnunet", "slic"] if NNUNET_INSTALLED else ["slic"]


@pytest.fixture(scope="module")
def seg(runs) -> PresetRun:
    return runs(SEG).run()


@pytest.mark.slow
def test_segmentation_three_reader_dice_matrix_with_cis(seg):
    out = "results/segmentation/CT"
    matrix = seg.tsv(f"{out}/dice_matrix.tsv").set_index("name")
    names = ["R1", "R2", "R3", "consensus", *SEG_MODELS]
    assert sorted(matrix.index) == sorted(names) and sorted(matrix.columns) == sorted(names)
    assert np.allclose(np.diag(matrix.loc[names, names]), 1.0)
    pairs = seg.tsv(f"{out}/dice_pairwise.tsv")
    assert len(pairs) == len(names) * (len(names) - 1) // 2  # every pair of the names
    assert pairs[["ci_low", "ci_high"]].notna().all().all()
    assert (pairs["ci_low"] <= pairs["mean"]).all() and (pairs["mean"] <= pairs["ci_high"]).all()
    n_cases = len(seg.tsv("results/cohort/cases.tsv"))
    assert (pairs["n"] == n_cases).all()  # validation = every case, readers on all


@pytest.mark.slow
def test_segmentation_volume_error_and_ratio_wilcoxon(seg):
    out = "results/segmentation/CT"
    summary = seg.tsv(f"{out}/volume_summary.tsv")
    assert set(summary["reference"]) == {"consensus"}
    assert set(summary["method"]) == {"R1", "R2", "R3", *SEG_MODELS}
    for t in (1, 5, 10, 15):
        assert summary[f"share_vpe_lt_{t}"].between(0, 1).all()
    assert (summary["share_vpe_lt_1"] <= summary["share_vpe_lt_15"]).all()
    assert summary["share_ratio_gt_1"].between(0, 1).all()
    assert summary["median_ratio"].gt(0).all() and summary["wilcoxon_p"].between(0, 1).all()
    for r in summary.itertuples():
        biased = r.wilcoxon_p < 0.05
        want = ("over" if r.median_ratio > 1 else "under") + "-segmentation"
        assert r.tendency == (want if biased else "no systematic bias"), r
    # the synthetic novice (R3) draws inside the tumor: under-segmentation shows
    r3 = summary.set_index("method").loc["R3"]
    assert r3["median_ratio"] < 1 and r3["share_ratio_gt_1"] < 0.5
    entropy = seg.tsv(f"{out}/entropy.tsv")
    assert set(entropy["method"]) == set(SEG_MODELS) and {"entropy_core", "entropy_rim"} <= set(
        entropy.columns
    )


@pytest.mark.slow
def test_segmentation_ct_window_and_median_spacing(seg):
    cfg = seg.cfg
    assert cfg["cohort"]["modality"] == "CT" and cfg["preprocess"]["hu_window"] == [0, 350]
    assert cfg["preprocess"]["spacing"] == "median"
    # the training (S1) median spacing, not the external center's, sets the grid
    img = sitk.ReadImage(str(case_file(seg.wd, "S2001", "CT", "image.nii.gz")))
    s1 = [0.7, 0.7, 2.5]
    assert img.GetSpacing() == pytest.approx(s1, rel=1e-3)
    arr = sitk.GetArrayFromImage(
        sitk.ReadImage(str(case_file(seg.wd, "S1001", "CT", "prepared.nii.gz")))
    )
    assert arr.min() >= 0 - 1e-3 and arr.max() <= 350 + 1e-3


# -------------------------------------------------------- 3. hcc_early_recurrence
HCC = "hcc_early_recurrence"
HCC_CLASSIFIERS = {
    "rcr_lr": "logistic",
    "rcr_svm": "svm",
    "rcr_knn": "knn",
    "rcr_xgboost": "xgboost",
    "rcr_mlp": "mlp",
}


@pytest.fixture(scope="module")
def hcc(runs) -> PresetRun:
    return runs(HCC).run()


@pytest.mark.slow
def test_hcc_single_center_split(hcc):
    cases = hcc.tsv("results/cohort/cases.tsv")
    assert set(cases["center"]) == {"HCC"}
    # the split function the full-size check (132 / 33) uses wrote this cohort's splits
    expected = synthetic_splits(hcc.cfg["synthetic"]["spec"])
    assert cases.set_index("case_id")["split"].sort_index().to_dict() == expected.to_dict()
    counts = cases["split"].value_counts().to_dict()
    assert set(counts) == {"train", "test"}  # no external center
    assert counts["test"] == pytest.approx(0.2 * len(cases), abs=1)  # 33 of 165 at full size


@pytest.mark.slow
def test_hcc_five_classifiers_and_three_model_families(hcc):
    cards = {m: hcc.card("early_recurrence", m) for m in preset(HCC)["models"]["early_recurrence"]}
    assert len(cards) == 7
    for model, clf in HCC_CLASSIFIERS.items():
        assert cards[model]["spec"]["classifier"]["name"] == clf
        assert set(cards[model]["groups"]) == {"radiomics", "clinical"}  # RCR
    assert cards["clinical_lr"]["groups"] == ["clinical"]  # clinical-radiological
    assert {f["feature"] for f in cards["clinical_lr"]["selected_features"]} <= {
        "clinical__afp",
        "clinical__age",
    }
    assert set(cards["dlrcr_lr"]["groups"]) == {"deep", "radiomics", "clinical"}  # DLRCR
    # grids searched by inner CV on training rows
    assert cards["rcr_svm"]["best_params"]["C"] in (0.1, 1, 10)
    assert cards["rcr_knn"]["best_params"]["n_neighbors"] in (5, 9, 15)
    for card in cards.values():
        assert card["training_centers"] == ["HCC"] and "combat" not in card["steps"]


@pytest.mark.slow
def test_hcc_metrics_train_and_validation(hcc):
    for model in preset(HCC)["models"]["early_recurrence"]:
        m = hcc.metrics("early_recurrence", model)
        for cohort in ("cv", "train", "test"):
            for metric in ("auc", "accuracy", "sensitivity", "specificity"):
                v = _value(m, cohort, metric)
                assert 0 <= v["value"] <= 1, (model, cohort, metric)
        assert not any(c.startswith("external") for c in m["cohort"])
    curves = pd.read_parquet(hcc.wd / "results/evaluation/early_recurrence/dlrcr_lr/curves.parquet")
    assert {"roc", "calibration", "decision"} <= set(curves["kind"])
    assert any(c.startswith("T1__deep_") for c in hcc.raw().columns)


# -------------------------------------------------- 4. neuroblastoma_highrisk_mri
NBH = "neuroblastoma_highrisk_mri"


@pytest.fixture(scope="module")
def nbh(runs) -> PresetRun:
    return runs(NBH).run()


def _largest_slice_mean(run: PresetRun, case: str) -> tuple[float, float]:
    """Mean intensity of the model-reader ROI: on its largest axial slice, and in 3D."""
    from radstudy.features import largest_slice_mask

    img = sitk.GetArrayFromImage(sitk.ReadImage(str(case_file(run.wd, case, "T2", "image.nii.gz"))))
    mask = sitk.GetArrayFromImage(
        sitk.ReadImage(str(case_file(run.wd, case, "T2", "mask_R1.nii.gz")))
    )
    mask = mask == 1
    return float(img[largest_slice_mask(mask)].mean()), float(img[mask].mean())


@pytest.mark.slow
def test_highrisk_2d_largest_slice_930_features(nbh):
    feats = _feature_names(nbh)
    assert len(feats) == 930  # 93 original + 744 wavelet + 93 square, no shape
    types = _image_types(feats, "T2")
    assert types == {"original", "square"} | {f"wavelet-{d}" for d in _WAVELETS}
    assert not any("_shape_" in f for f in feats)
    raw = nbh.raw()
    case = raw.index[0]
    mean2d, mean3d = _largest_slice_mean(nbh, case)
    value = raw.loc[case, "T2__original_firstorder_Mean"]
    assert value == pytest.approx(mean2d, rel=1e-4, abs=1e-3)
    assert abs(mean2d - mean3d) > 1e-3  # the check can tell 2D from 3D


_WAVELETS = ["LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH"]


def _icc_filter_applied(run: PresetRun, threshold: float) -> None:
    icc = run.tsv("results/selection/icc.tsv")
    assert {"inter", "intra"} == set(icc["kind"])
    assert set(icc.loc[icc["kind"] == "intra", "raters"]) == {"R1+R1r"}
    assert set(icc.loc[icc["kind"] == "inter", "raters"]) == {"R1+R2"}
    robust = (run.wd / "results/selection/robust.txt").read_text(encoding="utf-8").split()
    assert robust and robust != ["ALL"]
    wide = icc.pivot_table(index="feature", columns="kind", values="icc")
    assert (wide.loc[robust, "inter"] >= threshold).all()
    # the threshold removed features
    assert (wide["inter"] < threshold).any() and len(robust) < len(wide)
    # intra-observer agreement filters too (same reader one month / two weeks later)
    assert (wide.loc[robust, "intra"] >= threshold).all(), "robust features fail intra ICC"


@pytest.mark.slow
def test_highrisk_inter_and_intra_icc_filter(nbh):
    _icc_filter_applied(nbh, 0.75)


@pytest.mark.slow
def test_highrisk_mrmr_then_forward_lr_and_random_forest(nbh):
    mlr = nbh.card("high_risk", "mlr")
    assert mlr["spec"]["classifier"]["name"] == "logistic"
    steps = mlr["steps"]
    assert steps.index("icc") < steps.index("mrmr") < steps.index("forward") < steps.index("model")
    chosen = [f["feature"] for f in mlr["selected_features"]]
    assert 1 <= len(chosen) <= 5  # forward selection's max_features
    rf = nbh.card("high_risk", "random_forest")
    assert rf["spec"]["classifier"]["name"] == "random_forest" and "mrmr" in rf["steps"]
    assert "forward" not in rf["steps"]
    rf_feats = [f["feature"] for f in rf["selected_features"]]
    assert len(rf_feats) == 10  # the mRMR 10 of radiomics + clinical
    assert set(chosen) <= set(rf_feats) | {c for c in nbh.raw().columns if "clinical__" in c}
    for card in (mlr, rf):
        assert card["training_centers"] == ["A"]


@pytest.mark.slow
def test_highrisk_metrics_on_external_center_b(nbh):
    for model in ("mlr", "random_forest"):
        m = nbh.metrics("high_risk", model)
        auc = _value(m, "external:B", "auc")
        assert auc["n"] == 5 and 0 <= auc["value"] <= 1
        assert _value(m, "cv", "auc")["n"] == 10
        assert "test" not in set(m["cohort"])  # all of A trains
    cases = nbh.tsv("results/cohort/cases.tsv")
    assert cases.groupby("center")["split"].agg(set).to_dict() == {
        "A": {"train"},
        "B": {"external"},
    }
    norm = json.loads(
        case_file(nbh.wd, "A001", "T2", "normalisation.json").read_text(encoding="utf-8")
    )
    assert norm["method"] == "zscore"


# ------------------------------------------------- 5. neuroblastoma_surgical_risk
NBS = "neuroblastoma_surgical_risk"


@pytest.fixture(scope="module")
def nbs(runs) -> PresetRun:
    return runs(NBS).run()


@pytest.mark.slow
def test_surgical_every_image_type_and_class(nbs):
    feats = _feature_names(nbs)
    types = _image_types(feats, "T2")
    expected = {"original", "square", "squareroot", "logarithm", "exponential", "gradient"}
    expected |= {f"wavelet-{d}" for d in _WAVELETS}
    expected |= {f"log-sigma-{s}-mm-3D" for s in ("0-5", "1-0", "2-0", "3-0", "4-0")}
    expected |= {"lbp-2D"}
    assert types == expected
    classes = {f.split("_")[-2] for f in feats}
    assert classes == {"shape", "firstorder", "glcm", "glrlm", "glszm", "ngtdm", "gldm"}
    # 14 shape + 20 image types x 93: every feature before the ICC filter
    assert len(feats) == 1874


@pytest.mark.slow
def test_surgical_icc_above_075(nbs):
    _icc_filter_applied(nbs, 0.75)


@pytest.mark.slow
def test_surgical_ttest_lasso_smote_rbf_svm(nbs):
    card = nbs.card("surgical_risk", "svm")
    clf = card["spec"]["classifier"]
    assert clf["name"] == "svm" and clf["params"] == {"C": 100, "gamma": 0.01}
    assert card["spec"]["smote"] is True
    steps = card["steps"]
    assert steps.index("univariate") < steps.index("lasso") < steps.index("scale")
    assert steps.index("scale") < steps.index("smote") < steps.index("model")
    assert 1 <= len(card["selected_features"]) <= 28
    assert "lasso" in card and len(card["lasso"]["cv_mean"]) == len(card["lasso"]["grid"])
    # the fitted estimator is the RBF SVM with those parameters
    import joblib

    model = joblib.load(nbs.wd / "results/models/surgical_risk/svm/model.joblib")
    calibrated = model.steps[-1][1]  # CalibratedSVM: Platt sigmoid over the SVC refit on all rows
    svc = calibrated.calibrated_classifiers_[0].estimator
    assert (svc.kernel, svc.C, svc.gamma) == ("rbf", 100, 0.01)
    m = nbs.metrics("surgical_risk", "svm")
    for cohort in ("train", "test"):
        for metric in ("auc", "sensitivity", "specificity", "accuracy", "tp", "fn"):
            _value(m, cohort, metric)
