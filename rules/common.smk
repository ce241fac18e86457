"""Config + cohort sheet: validate, derive case lists, input functions. No rules.

Checks the config (unknown keys, types, cross-key rules; radstudy.config), fills in
the schema's defaults (config.schema.yaml, the only place defaults live), and reads
the cohort sheet (validated against rules/schemas/cases.schema.yaml). Writes nothing
(except the synthetic demo cohort when its sheet is missing): the validated sheet
goes to rule register_cohort / register_center as params.
"""

import sys
from functools import cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the workflow's own folder (not workflow.basedir, which is the caller's folder when
# radstudy runs as a module of a user's project)
RADSTUDY = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parent
sys.path.insert(0, str(RADSTUDY / "scripts"))

from radstudy import cohort as rs_cohort  # noqa: E402
from radstudy import config as rs_config  # noqa: E402
from radstudy import nnunet as rs_nnunet  # noqa: E402
from radstudy.errors import ConfigError  # noqa: E402

SCHEMA = RADSTUDY / "config.schema.yaml"
try:  # unknown keys and type errors as one line each, naming the key
    rs_config.check_config(config, rs_config.load_schema(SCHEMA))
except ConfigError as err:
    raise WorkflowError(str(err))
rs_config.fill_models(config, rs_config.load_schema(SCHEMA))  # endpoints without models
validate(config, str(SCHEMA))  # fills in the schema's defaults (the only defaults)
config.update(rs_config.unshare(config))
try:
    rs_config.check_semantics(config)
except ConfigError as err:
    raise WorkflowError(str(err))

# feature-table entry point: features given, no image stages (sequences/readers [])
FEATURE_TABLE = config["cohort"]["features_table"]
if config["synthetic"]["enabled"] and not Path(config["cohort"]["sheet"]).is_file():
    from radstudy.synth import generate_cohort

    generate_cohort(Path(config["cohort"]["sheet"]).parent, config["synthetic"]["spec"])

try:
    CASES, SHEET_EXCLUDED = rs_cohort.load_cohort(
        config["cohort"]["sheet"],
        config,
        RADSTUDY / "rules" / "schemas" / "cases.schema.yaml",
    )
except ConfigError as err:
    raise WorkflowError(f"cohort sheet: {err}")

# the sheet's rows per center as TSV text: rule register_center's params (a center's
# file is rewritten only when its rows change; nothing is written at parse time)
CENTER_SHEETS = {
    c: rs_cohort.to_tsv(rows) for c, rows in CASES.groupby("center", sort=True)
}


def center_sheet_text(wildcards):
    return CENTER_SHEETS[wildcards.center]


try:
    from radstudy.features import check_params

    check_params(config["features"])
except ConfigError as err:
    raise WorkflowError(f"config features: {err}")

# the sheet's own names of its id, meta, outcome, fold, clinical and descriptor
# columns: never features when the feature table is the sheet itself
NON_FEATURE_COLUMNS = rs_cohort.source_columns(config)
# what rule import_center reads of the cohort block
IMPORT_COHORT = {
    k: config["cohort"][k]
    for k in ("id_column", "feature_columns", "ignore_columns", "clinical")
}
SEQS = list(config["cohort"]["sequences"])
READERS = list(config["cohort"]["readers"])
REF_READER = config["cohort"]["reference_reader"]
CENTERS = sorted(CASES["center"].unique())
TRAIN_CENTERS = rs_cohort.training_centers(CASES)
ENDPOINTS = sorted(config["endpoints"])
MODELS = {ep: sorted(config["models"].get(ep, {})) for ep in ENDPOINTS}
ROW = CASES.set_index("case_id")
TRAIN_IDS = sorted(ROW.index[ROW["split"] == "train"])
TRAIN_SET = frozenset(TRAIN_IDS)
ORGAN_COL = config["cohort"]["organ_mask_column"] or None
# segmentation pseudo-readers: slic (slic_fcm), nnunet (segmentation.method may list both)
SEG_READERS = rs_config.pseudo_readers(config["segmentation"])
# features.model_reader: empty means the reference reader (schema)
MODEL_READER = config["features"]["model_reader"] or REF_READER
# masks whose features are extracted: readers + segmentation pseudo-readers
FEATURE_READERS = READERS + SEG_READERS
# masks carried through preprocessing: every reader, plus the organ mask if given
PREP_MASKS = READERS + (["organ"] if ORGAN_COL else [])


wildcard_constraints:
    case="[A-Za-z0-9][A-Za-z0-9_.-]*",  # the sheet schema's case_id pattern
    seq="|".join(SEQS),
    reader="|".join(READERS + SEG_READERS),
    center="|".join(CENTERS),
    endpoint="|".join(ENDPOINTS),
    batch=r"\d+",


CENTER_CASES = {c: sorted(ROW.index[ROW["center"] == c]) for c in CENTERS}


def center_cases(center):
    return CENTER_CASES[center]


# extraction batches: each center's sorted cases in near-equal runs of at most
# batch_size, so a new center gets batches of its own and the old ones stay; its
# training cases and its other cases in batches of their own, so the per-batch pieces
# of the fits (Nyul landmarks, deep crops, nnU-Net's dataset) list folders that hold
# training cases only, and a changed test case reruns nothing fitted
BATCHES = {
    c: rs_cohort.split_batches(cases, TRAIN_SET, config["features"]["batch_size"])
    for c, cases in CENTER_CASES.items()
}
CASE_BATCH = {
    case: (c, b) for c in BATCHES for b, cases in BATCHES[c].items() for case in cases
}


# ------------------------------------------------- per-case files, written per batch
# The per-case stages (prepare_image, segment_slic_fcm, normalize_image, predict_nnunet)
# run once per extraction batch x sequence: each job writes one folder with a subfolder
# per case, so the DAG holds a job per batch, not per case (README "Very large
# cohorts"). A job that reads case files lists the batch folders that hold them as
# its inputs (one per batch and stage, never one per case) and gets the files' paths
# in its params.
STAGE_OF = {
    "prepared.nii.gz": "prepared",
    "qc.json": "prepared",
    "image.nii.gz": "normalised",
    "normalisation.json": "normalised",
    "mask_slic.nii.gz": "slic",
    "membership_slic.nii.gz": "slic",
    "mask_nnunet.nii.gz": "nnunet",
    "membership_nnunet.nii.gz": "nnunet",
}


def batch_dir(seq, center, batch, stage):
    """The folder one per-batch job writes (stage: prepared, slic, normalised, nnunet)."""
    if stage == "nnunet":
        return f"results/nnunet/{seq}/predictions/{center}/batch{batch}"
    return f"results/cases/{seq}/{center}/batch{batch}/{stage}"


def case_folder(case, seq, name):
    """The batch folder that holds one case's ``name`` (what a job lists as input)."""
    center, batch = CASE_BATCH[case]
    return batch_dir(seq, center, batch, STAGE_OF.get(name, "prepared"))


def case_file(case, seq, name):
    """One case's file: prepared.nii.gz, qc.json, mask_{reader}.nii.gz (the readers' and
    the organ mask: prepare_image), mask_/membership_{slic,nnunet}.nii.gz,
    image.nii.gz, normalisation.json (normalize_image)."""
    folder = case_folder(case, seq, name)
    if STAGE_OF.get(name) == "nnunet":  # predict_nnunet's names: {case}_mask.nii.gz
        return f"{folder}/{case}_{name.split('_')[0]}.nii.gz"
    return f"{folder}/{case}/{name}"


def folders_of(files):
    """The batch folders holding ``files`` ((case, seq, name) triples), sorted."""
    return sorted({case_folder(*f) for f in files})


def wildcard_batch(wildcards):
    """The cases of the batch named by the wildcards center and batch."""
    return BATCHES[wildcards.center][wildcards.batch]


def total_cores():
    """This run's --cores; 1 where there is none (a cluster executor's run)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# threads per extraction batch: enough for the batches to fill --cores (one batch on
# 2 cores: 2 threads, 4 batches: 1 each, side by side); --set-threads overrides (the
# SLURM profile sets 2: a cluster run has no --cores to share out)
EXTRACT_THREADS = rs_cohort.batch_threads(
    len(SEQS) * sum(len(b) for b in BATCHES.values()),
    total_cores(),
    max((len(v) for b in BATCHES.values() for v in b.values()), default=1),
)


# the per-case stages run per batch too (prepare_image, segment_slic_fcm,
# normalize_image: each case in its own process, one per thread at once)
PER_CASE_THREADS = EXTRACT_THREADS


def batch_case_runtime(wildcards, threads, minutes):
    """Minutes for one per-batch job of a per-case stage: ``minutes`` per case,
    ``threads`` cases at a time, plus 5."""
    n = len(wildcard_batch(wildcards))
    return minutes * -(-n // max(1, threads)) + 5


def batch_files(center, seq):
    """(features, exclusions) of every extraction batch of one center x sequence."""
    stem = f"results/features/radiomics/{seq}/{center}/batch"
    return [(f"{stem}{b}.parquet", f"{stem}{b}.excluded.tsv") for b in BATCHES[center]]


def center_batch_files(center):
    """Every sequence's batches of one center, in sequence order."""
    return [pair for s in SEQS for pair in batch_files(center, s)]


# the sheet's rows as dicts: input functions run once per job (10,000s at scale)
SHEET_ROWS = ROW.to_dict("index")


def sheet_image_of(case, seq):
    return SHEET_ROWS[case][rs_cohort.image_column(config, seq)]


def sheet_image(wildcards):
    return sheet_image_of(wildcards.case, wildcards.seq)


def sheet_masks(case):
    """Reader (and organ) masks the sheet gives for a case: reader -> path or None."""
    row = SHEET_ROWS[case]
    masks = {r: row[rs_cohort.mask_column(config, r)] for r in READERS}
    if ORGAN_COL:
        masks["organ"] = row[ORGAN_COL]
    return masks


def prepare_inputs(wildcards):
    """The sheet's images and masks of one batch x sequence."""
    cases = wildcard_batch(wildcards)
    return {
        "images": [sheet_image_of(c, wildcards.seq) for c in cases],
        "masks": sorted(
            {p for c in cases for p in sheet_masks(c).values() if p is not None}
        ),
    }


def prepare_cases(wildcards):
    """case -> what prepare_image reads (image, masks, DICOM settings: radstudy.cohort)
    and writes for one batch x sequence."""
    out = {}
    for c in wildcard_batch(wildcards):
        row = SHEET_ROWS[c]
        out[c] = {
            "image": sheet_image_of(c, wildcards.seq),
            "masks": sheet_masks(c),
            "dicom": rs_cohort.prepare_dicom_settings(
                config, wildcards.seq, row, PREP_MASKS
            ),
            "out_image": case_file(c, wildcards.seq, "prepared.nii.gz"),
            "out_masks": {
                r: case_file(c, wildcards.seq, f"mask_{r}.nii.gz") for r in PREP_MASKS
            },
            "out_qc": case_file(c, wildcards.seq, "qc.json"),
        }
    return out


def prepared_folder(wildcards):
    """The batch's prepare_image folder (the wildcards seq, center and batch)."""
    return batch_dir(wildcards.seq, wildcards.center, wildcards.batch, "prepared")


def slic_cases(wildcards):
    """case -> prepared image, organ mask (if the sheet gives one) and outputs."""
    seq = wildcards.seq
    return {
        c: {
            "image": case_file(c, seq, "prepared.nii.gz"),
            "organ": case_file(c, seq, "mask_organ.nii.gz") if ORGAN_COL else None,
            "out_mask": case_file(c, seq, "mask_slic.nii.gz"),
            "out_membership": case_file(c, seq, "membership_slic.nii.gz"),
        }
        for c in wildcard_batch(wildcards)
    }


# ------------------------------------------------- per-batch pieces of cohort-level jobs
# A cohort-level job lists one small piece per extraction batch (written by a per-batch
# job: measure_nyul, measure_segmentation, crop_deep, normalize_image's QC records),
# never every case's files: its input list grows with the batches, and planning with
# the cohort (README "Very large cohorts"; tests/integration/test_dag_scale.py).
BATCH_KEYS = [(c, b) for c in CENTERS for b in BATCHES[c]]
TRAIN_BATCH_KEYS = [
    (c, b) for c, b in BATCH_KEYS if any(x in TRAIN_SET for x in BATCHES[c][b])
]


def batch_pieces(pattern, keys=BATCH_KEYS, **wildcards):
    """``pattern`` (wildcards center, batch and the given ones) for each batch."""
    return [pattern.format(center=c, batch=b, **wildcards) for c, b in keys]


def batch_train_cases(wildcards):
    """Training cases of one extraction batch (fits see training cases only)."""
    return [c for c in BATCHES[wildcards.center][wildcards.batch] if c in TRAIN_SET]


def nyul_batch_files(wildcards):
    """Training cases of one batch only: the landmarks never see test or external rows
    (images, and the region's masks where the landmarks are taken in a region)."""
    region = nyul_region()
    cases = batch_train_cases(wildcards)
    out = {"images": [case_file(c, wildcards.seq, "prepared.nii.gz") for c in cases]}
    if region:
        out["masks"] = [
            case_file(c, wildcards.seq, f"mask_{region}.nii.gz") for c in cases
        ]
    return out


def nyul_pieces(wildcards):
    """Landmarks of the batches that hold training cases (rule measure_nyul)."""
    return batch_pieces(
        "results/normalisation/{seq}/{center}/batch{batch}.json",
        TRAIN_BATCH_KEYS,
        seq=wildcards.seq,
    )


def nyul_region():
    """Mask name (reader or 'organ') whose region defines the Nyul landmarks."""
    region = {"organ": "organ", "roi": REF_READER}.get(
        config["preprocess"]["nyul_region"]
    )
    return REF_READER if region == "organ" and not ORGAN_COL else region


def normalization_inputs(wildcards):
    out = {"prepared": prepared_folder(wildcards)}
    if config["preprocess"]["normalization"] == "nyul":
        out["nyul"] = f"results/normalisation/nyul_{wildcards.seq}.json"
    return out


def normalization_cases(wildcards):
    """case -> prepared image, reference mask, Nyul region mask and outputs."""
    seq, nyul = wildcards.seq, config["preprocess"]["normalization"] == "nyul"
    region = nyul_region() if nyul else None
    return {
        c: {
            "image": case_file(c, seq, "prepared.nii.gz"),
            "mask": case_file(c, seq, f"mask_{REF_READER}.nii.gz"),
            "region": case_file(c, seq, f"mask_{region}.nii.gz") if region else None,
            "out_image": case_file(c, seq, "image.nii.gz"),
            "out_qc": case_file(c, seq, "normalisation.json"),
        }
        for c in wildcard_batch(wildcards)
    }


def center_batch_inputs(wildcards):
    """features / excluded: one center's extraction batches (every sequence), paired
    by position."""
    pairs = center_batch_files(wildcards.center)
    return {"features": [f for f, _ in pairs], "excluded": [e for _, e in pairs]}


def center_assembly_inputs(wildcards):
    out = {
        "sheet": f"results/cohort/centers/{wildcards.center}.tsv",
        **center_batch_inputs(wildcards),
    }
    if config["deep"]["enabled"]:  # per-center deep tables (one network load each)
        out["deep"] = [
            f"results/features/deep/{s}/{wildcards.center}.parquet" for s in SEQS
        ]
        out["deep_excluded"] = [
            f"results/features/deep/{s}/{wildcards.center}.excluded.tsv" for s in SEQS
        ]
    return out


def deep_center_files(wildcards):
    """The center's normalised images and model-reader masks."""
    cases = center_cases(wildcards.center)
    return {
        "images": [case_file(c, wildcards.seq, "image.nii.gz") for c in cases],
        "masks": [
            case_file(c, wildcards.seq, f"mask_{MODEL_READER}.nii.gz") for c in cases
        ],
    }


def deep_center_inputs(wildcards):
    """The center's batch folders that hold them (+ the trained checkpoint)."""
    names = ["image.nii.gz", f"mask_{MODEL_READER}.nii.gz"]
    cases = center_cases(wildcards.center)
    return {
        **deep_checkpoint(wildcards),
        "folders": folders_of([(c, wildcards.seq, n) for c in cases for n in names]),
    }


def extraction_readers(case):
    """Masks whose features a case needs: the model reader's, and for a training case
    every reader's (they feed the ICC, computed on training cases only)."""
    if case in TRAIN_SET:
        return sorted(set(READERS) | {MODEL_READER})
    return [MODEL_READER]


def batch_cases(wildcards):
    """case -> {image, masks: {reader: path}} of one extraction batch."""
    out = {}
    for case in BATCHES[wildcards.center][wildcards.batch]:
        masks = {
            r: case_file(case, wildcards.seq, f"mask_{r}.nii.gz")
            for r in extraction_readers(case)
        }
        out[case] = {
            "image": case_file(case, wildcards.seq, "image.nii.gz"),
            "masks": masks,
        }
    return out


def batch_runtime(wildcards, threads):
    """Minutes for one extraction batch: 30 per case (every image type on a large
    1 mm MRI volume takes ~10 min), ``threads`` cases at a time."""
    n = len(BATCHES[wildcards.center][wildcards.batch])
    return 30 * -(-n // max(1, threads))


def batch_mem_mb(wildcards, threads):
    """MB for one extraction batch: 4,000 per case process running at once."""
    return 4000 * max(1, threads)


def batch_inputs(wildcards):
    """The batch folders holding the batch's normalised images and masks."""
    return folders_of(
        [
            (c, wildcards.seq, n)
            for c in wildcard_batch(wildcards)
            for n in ["image.nii.gz"]
            + [f"mask_{r}.nii.gz" for r in extraction_readers(c)]
        ]
    )


def center_train_cases(wildcards):
    """Training cases of one center (the ICC is computed on training cases only)."""
    return [c for c in center_cases(wildcards.center) if c in TRAIN_SET]


def train_tables(kind="raw"):
    return [f"results/features/{kind}/{c}.parquet" for c in TRAIN_CENTERS]


def train_sheets():
    return [f"results/cohort/centers/{c}.tsv" for c in TRAIN_CENTERS]


def report_inputs(pattern):
    """One path per endpoint x model."""
    return [
        pattern.format(endpoint=ep, model=m) for ep in ENDPOINTS for m in MODELS[ep]
    ]


def deep_checkpoint(wildcards):
    """The trained ResNet when deep.weights is 'train' (training cases only)."""
    if config["deep"]["weights"] in ("train", "selfsup"):
        return {"checkpoint": f"results/models/deep/{wildcards.seq}.pt"}
    return {}


def deep_endpoint(wildcards):
    """Column the ResNet is trained on: deep.endpoint's column (binary) or event
    indicator (survival); the config must name it when deep features are on."""
    ep = config["endpoints"][config["deep"]["endpoint"]]
    return ep["column"] if ep["type"] == "binary" else ep["event"]


# readers whose masks form the consensus (repeat readings left out)
HUMAN_READERS = [r for r in READERS if r not in config["cohort"]["repeats"]]


def segmentation_rows(wildcards):
    """Per sequence, what measure_segmentation reads of one batch - ``masks``
    [case, name, path] of every reader / pseudo-reader, ``memberships`` [case, name,
    path] of the pseudo-readers, ``images`` [case, path] of the prepared image (the
    agreement's overlay figure)."""
    cases = wildcard_batch(wildcards)
    return {
        s: {
            "masks": [
                [c, r, case_file(c, s, f"mask_{r}.nii.gz")]
                for c in cases
                for r in HUMAN_READERS + SEG_READERS
            ],
            "memberships": [
                [c, r, case_file(c, s, f"membership_{r}.nii.gz")]
                for c in cases
                for r in SEG_READERS
            ],
            "images": [[c, case_file(c, s, "prepared.nii.gz")] for c in cases],
        }
        for s in SEQS
    }


def segmentation_folders(wildcards):
    """The batch folders holding the batch's prepared images and every mask (every
    sequence)."""
    names = ["prepared.nii.gz"] + [
        f"mask_{r}.nii.gz" for r in HUMAN_READERS + SEG_READERS
    ]
    return folders_of(
        [(c, s, n) for c in wildcard_batch(wildcards) for s in SEQS for n in names]
    )


def segmentation_pieces(wildcards):
    """Per-case agreement pieces of every batch (rule measure_segmentation)."""
    return batch_pieces(
        "results/segmentation/{seq}/{center}/batch{batch}.json", seq=wildcards.seq
    )


def deep_crop_rows(wildcards):
    """Per sequence, (case, image, mask) of one batch's training cases (the ResNet's
    training set)."""
    return {
        s: [
            (
                c,
                case_file(c, s, "image.nii.gz"),
                case_file(c, s, f"mask_{MODEL_READER}.nii.gz"),
            )
            for c in batch_train_cases(wildcards)
        ]
        for s in SEQS
    }


def deep_crop_inputs(wildcards):
    names = ["image.nii.gz", f"mask_{MODEL_READER}.nii.gz"]
    return folders_of(
        [(c, s, n) for c in batch_train_cases(wildcards) for s in SEQS for n in names]
    )


def deep_crop_pieces(wildcards):
    """ROI crops of the batches that hold training cases (rule crop_deep)."""
    return batch_pieces(
        "results/models/deep/crops/{seq}/{center}/batch{batch}.npz",
        TRAIN_BATCH_KEYS,
        seq=wildcards.seq,
    )


def qc_rows(wildcards):
    """[case, seq, qc.json, normalisation.json] of one batch x sequence's cases (the
    QC records rule normalize_image writes beside its images)."""
    s = wildcards.seq
    return [
        [c, s, case_file(c, s, "qc.json"), case_file(c, s, "normalisation.json")]
        for c in wildcard_batch(wildcards)
    ]


def qc_pieces():
    """Every batch x sequence's QC records, batch by batch (each batch's sequences in
    SEQS order: the report keeps that order within a case)."""
    return [
        f"results/cohort/qc/{s}/{c}/batch{b}.json" for c, b in BATCH_KEYS for s in SEQS
    ]


def segmentation_outputs():
    """Agreement tables when there is something to compare (2+ mask sources)."""
    if len(HUMAN_READERS) + len(SEG_READERS) < 2:
        return []
    return expand("results/segmentation/{seq}/dice_pairwise.tsv", seq=SEQS)


def _median_spacings():
    """Training-median voxel spacing per sequence (headers only; training rows only;
    a DICOM study's series picked with the case's DICOM settings, as prepare_image)."""
    from radstudy.preprocess import median_spacing

    return {
        s: median_spacing(
            [SHEET_ROWS[c][rs_cohort.image_column(config, s)] for c in TRAIN_IDS],
            cases=TRAIN_IDS,
            dicom=[
                rs_cohort.dicom_settings(config, s, SHEET_ROWS[c]) for c in TRAIN_IDS
            ],
        )
        for s in SEQS
    }


MEDIAN_SPACING = (
    _median_spacings() if config["preprocess"]["spacing"] == "median" else {}
)


def prepare_cfg(wildcards):
    """Preprocessing settings of one sequence (modality, training-median spacing; each
    case's DICOM settings are in prepare_cases)."""
    cfg = {**config["preprocess"], "modality": config["cohort"]["modality"]}
    if wildcards.seq in MEDIAN_SPACING:
        cfg["median_spacing"] = MEDIAN_SPACING[wildcards.seq]
    return cfg


def export_outputs():
    """The files segmentation.export asks for (written by export_mask): a DICOM SEG or an
    RTSTRUCT per pseudo-reader mask of each DICOM case (none with export: none)."""
    fmt = config["segmentation"]["export"]
    if fmt == "none":
        return []
    return [
        f"export/{fmt}/{case}/{seq}/{reader}.dcm"
        for case in sorted(ROW.index)
        for seq in SEQS
        if rs_cohort.may_be_dicom(SHEET_ROWS[case][rs_cohort.image_column(config, seq)])
        for reader in SEG_READERS
    ]


# ------------------------------------------------- nnU-Net (rules/nnunet.smk)
NNUNET_GPUS = rs_nnunet.train_gpus(config["segmentation"])


def nnunet_training_files(wildcards):
    """Prepared images and reference-reader masks of the TRAINING cases only (in
    TRAIN_IDS order): the only cases nnU-Net is trained on."""
    return {
        "images": [case_file(c, wildcards.seq, "prepared.nii.gz") for c in TRAIN_IDS],
        "masks": [
            case_file(c, wildcards.seq, f"mask_{REF_READER}.nii.gz") for c in TRAIN_IDS
        ],
    }


def nnunet_training_inputs(wildcards):
    """The prepare_image folders of the batches that hold training cases."""
    return folders_of([(c, wildcards.seq, "prepared.nii.gz") for c in TRAIN_IDS])


def nnunet_model(wildcards):
    """The ready model (segmentation.nnunet_model), else the one trained in the study."""
    ready = config["segmentation"]["nnunet_model"]
    return ready if ready else f"results/nnunet/{wildcards.seq}/model"


def nnunet_batch_images(wildcards):
    """case -> prepared image of one extraction batch (every case: test and external
    cases are predicted by the frozen model)."""
    return {
        c: case_file(c, wildcards.seq, "prepared.nii.gz")
        for c in wildcard_batch(wildcards)
    }


def nnunet_batch_inputs(wildcards):
    return {"prepared": prepared_folder(wildcards), "model": nnunet_model(wildcards)}


def nnunet_batch_runtime(wildcards):
    """Minutes for one batch's predictions: 10 per case on a CPU (a large 3d volume)."""
    return 10 * len(BATCHES[wildcards.center][wildcards.batch]) + 10


def nnunet_train_cfg():
    return rs_nnunet.train_settings(config["segmentation"])


def nnunet_predict_device():
    return rs_nnunet.predict_device(config["segmentation"])


def export_mask_folder(wildcards):
    return case_folder(wildcards.case, wildcards.seq, f"mask_{wildcards.reader}.nii.gz")


def export_mask_file(wildcards):
    return case_file(wildcards.case, wildcards.seq, f"mask_{wildcards.reader}.nii.gz")


def export_dicom_settings(wildcards):
    """How the case's series is picked (as rule prepare_image picks it)."""
    return rs_cohort.prepare_dicom_settings(
        config, wildcards.seq, SHEET_ROWS[wildcards.case], []
    )


# ------------------------------------------------------------------ params per rule
# Each rule's params hold only the config it reads (radstudy.config.subtree), so an
# edit elsewhere in the config reruns nothing; `code` is a hash of the package modules
# the rule's script runs, so a changed module reruns the jobs it produced.


@cache
def code_version(rule_name):
    """Hash of the radstudy code that scripts/{rule_name}.py runs."""
    scripts = RADSTUDY / "scripts"
    return rs_config.code_stamp(scripts / f"{rule_name}.py", scripts / "radstudy")


def model_keys(wildcards):
    """Config a model's fit reads: its endpoint, its spec, harmonisation, selection."""
    ep, model = wildcards.endpoint, wildcards.model
    keys = ["seed", "study.name", f"endpoints.{ep}", f"models.{ep}.{model}"]
    # harmonisation as the models use it (the prevalence warning is fit_combat's only)
    keys += [
        f"harmonization.{k}" for k in config["harmonization"] if k != "prevalence_alpha"
    ]
    keys.append("imputation")
    spec = config["models"][ep][model]
    if "selection" not in spec and "search" not in spec:  # a search selects on its own
        keys.append("selection")
    return keys


def model_threads(wildcards):
    """Threads of a model's fit job (a search runs its inner folds in parallel)."""
    return rs_config.job_threads(config["models"][wildcards.endpoint][wildcards.model])


def cv_threads(wildcards):
    """Threads of a model's CV job (its outer folds run side by side)."""
    return rs_config.cv_job_threads(
        config["models"][wildcards.endpoint][wildcards.model]
    )


def null_check_model(wildcards):
    """The fitted model whose chosen configurations a searched model's shuffled-label
    check refits (radstudy.stages.null_chain); nothing for a fixed model."""
    spec = config["models"][wildcards.endpoint][wildcards.model]
    ep = config["endpoints"][wildcards.endpoint]
    if (
        "search" in spec
        and config["evaluation"]["shuffled_null"]
        and ep["type"] == "binary"
    ):
        return {
            "model": f"results/models/{wildcards.endpoint}/{wildcards.model}/model.joblib"
        }
    return {}


def fit_model_cfg(wildcards):
    return rs_config.subtree(config, *model_keys(wildcards))


def cross_validate_cfg(wildcards):
    keys = model_keys(wildcards) + [
        "evaluation.cv",
        "evaluation.shuffled_null",
        "evaluation.loco",
    ]
    return rs_config.subtree(config, *keys)


def predict_cfg(wildcards):
    return rs_config.subtree(config, f"endpoints.{wildcards.endpoint}")


def evaluate_cfg(wildcards):
    return rs_config.subtree(
        config,
        "seed",
        f"endpoints.{wildcards.endpoint}",
        "evaluation.bootstrap",
        "evaluation.threshold",
        "evaluation.fail_on_null",
    )


def report_cfg():
    """What the report shows of the config (its methods and checklist sections)."""
    return rs_config.subtree(
        config,
        "study",
        "seed",
        "cohort",
        "endpoints",
        "preprocess",
        "segmentation",
        "features",
        "harmonization",
        "imputation",
        "reproducibility",
        "selection",
        "evaluation",
    )
