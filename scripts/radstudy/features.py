"""pyradiomics feature extraction for one case x sequence x reader.

The params YAML (``cfg["params"]``) says image types, feature classes and
settings; ``cfg["settings"]`` overrides settings. 2D mode (``cfg["mode"] ==
"2d"``) keeps the single axial slice with the largest ROI area: texture is then
in-plane by construction (identical to pyradiomics' force2D on that slice), and
image filters stay as the params file says (3D wavelet: 8 decompositions).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from radstudy.casestep import case_step_reason, marker_reason, run_isolated
from radstudy.errors import CaseError, ConfigError
from radstudy.logs import limit_threads

log = logging.getLogger(__name__)
PARAMS_DIR = Path(__file__).parent / "params"
DEFAULTS = {"params": "mri_full.yaml", "settings": {}, "mode": "3d"}  # = config.schema.yaml


def params_path(name: str | Path) -> Path:
    """A params file as given, or by name from the package's params/ folder."""
    p = Path(name)
    if p.is_file():
        return p
    q = PARAMS_DIR / p.name
    if q.is_file():
        return q
    raise FileNotFoundError(f"pyradiomics params file {name} not found (nor in {PARAMS_DIR})")


def load_params(cfg: dict) -> dict:
    """Params YAML merged with ``settings`` overrides (settings win).

    In 2D mode 3D shape features are dropped (meaningless on one slice).
    """
    cfg = {**DEFAULTS, **(cfg or {})}
    if cfg["mode"] not in ("2d", "3d"):
        raise ConfigError(f"features.mode must be 2d or 3d, not {cfg['mode']!r}")
    params = yaml.safe_load(params_path(cfg["params"]).read_text()) or {}
    params["setting"] = {**(params.get("setting") or {}), **(cfg.get("settings") or {})}
    if cfg["mode"] == "2d":
        params.get("featureClass", {}).pop("shape", None)
    return params


def axial_axis(image: sitk.Image) -> int:
    """numpy axis (of ``GetArrayFromImage``) closest to the patient's z (axial) axis.

    Column k of the direction matrix is the physical direction of index axis k;
    numpy reverses the index order, so index axis k is numpy axis ``2 - k``.
    """
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return 2 - int(np.argmax(np.abs(direction[2, :])))


def largest_slice_mask(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """Keep only the slice along ``axis`` with the largest ROI area (first of ties)."""
    moved = np.moveaxis(mask != 0, axis, 0)
    areas = moved.reshape(moved.shape[0], -1).sum(axis=1)
    k = int(np.argmax(areas))  # first of equal maxima: deterministic
    keep = np.zeros(mask.shape[axis], bool)
    keep[k] = True
    shape = [1] * mask.ndim
    shape[axis] = -1
    return np.where(keep.reshape(shape), mask, 0).astype(mask.dtype)


class _DropBenignGLCMNote(logging.Filter):
    """pyradiomics warns once per image and mask that its (symmetrical) GLCM gives Sum
    Average = 2 x Joint Average: expected, not a problem, 88 lines per 4-reader job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "GLCM is symmetrical" not in record.getMessage()


def _quiet_pyradiomics() -> None:
    """pyradiomics sets its logger to INFO and prints WARNING+ to stderr when imported:
    keep its warnings for the job log (root handler) and off the terminal."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR)  # its own stderr handler: errors only
    logger = logging.getLogger("radiomics")
    logger.setLevel(logging.WARNING)
    glcm = logging.getLogger("radiomics.glcm")
    if not any(isinstance(f, _DropBenignGLCMNote) for f in glcm.filters):
        glcm.addFilter(_DropBenignGLCMNote())


def extractor_from(params: dict):
    """A pyradiomics extractor; a params dict that fails its schema is a ConfigError."""
    from radiomics import featureextractor  # pyradiomics

    _quiet_pyradiomics()

    try:
        return featureextractor.RadiomicsFeatureExtractor(params)
    except Exception as err:  # pykwalify SchemaError, ValueError: both mean a bad file
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ConfigError(f"pyradiomics params are invalid: {first}") from err


def check_params(cfg: dict) -> dict:
    """Validate the ``features`` section before any job runs (file, schema, mode).

    Returns the merged params; raises ConfigError naming the problem.
    """
    try:
        params = load_params(cfg)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    extractor_from(params)
    return params


def feature_names(cfg: dict, image: sitk.Image, mask: sitk.Image) -> list[str]:
    """Names :func:`extract_case` would produce (without the sequence prefix)."""
    result = extractor_from(load_params(cfg)).execute(image, mask)
    return sorted(k for k in result if not k.startswith("diagnostics_"))


# Filters whose output depends on the mask (pyradiomics computes LBP3D only at ROI
# voxels); every other filter sees the image alone.
MASK_DEPENDENT_FILTERS = frozenset({"LBP3D"})


def _reader_mask(case: str, mask_path, label: int, axis: int | None):
    """A reader's mask as pyradiomics gets it: 2D mode keeps the largest slice."""
    mask = sitk.ReadImage(str(mask_path))
    if axis is not None:
        m2 = sitk.GetImageFromArray(largest_slice_mask(sitk.GetArrayFromImage(mask), axis))
        m2.CopyInformation(mask)
        mask = m2
    if not (sitk.GetArrayViewFromImage(mask) == label).any():
        raise CaseError(case, mask_path, f"mask has no voxel with label {label}")
    return mask


def _pyradiomics_error(case: str, path, err: Exception) -> CaseError:
    return CaseError(case, path, f"pyradiomics failed: {str(err).splitlines()[0][:200]}")


def _image_depends_on_mask(settings: dict) -> bool:
    """pyradiomics resampling and preCrop crop the image to each mask's bounding box."""
    resample = settings.get("interpolator") is not None and (
        settings.get("resampledPixelSpacing") is not None
    )
    return bool(resample or settings.get("preCrop"))


def _execute_shared(ext, image: sitk.Image, masks: dict, errors: dict, case, paths) -> dict:
    """``ext.execute`` for several masks on one image, each filter applied once.

    pyradiomics has no multi-mask call: ``execute`` filters the whole image for
    every mask, and with several readers (inter-/intra-observer ICC) the filters
    (wavelet, LoG, ...) are most of the work on clinical volumes. This is the
    body of ``RadiomicsFeatureExtractor.execute`` (pyradiomics 3.1, segment-based,
    no diagnostics) with the loops turned: one filtered image at a time (memory
    as in pyradiomics), features for every mask on it. Mask-dependent filters
    (``MASK_DEPENDENT_FILTERS``) still run per mask. Values are identical to
    ``execute`` (tested).
    """
    from radiomics import featureextractor, imageoperations

    settings = ext.settings.copy()
    if featureextractor.geometryTolerance != settings.get("geometryTolerance"):
        ext._setTolerance()
    state, base = {}, None
    for reader, mask in masks.items():
        try:
            img, msk = ext.loadImage(image, mask, None, **settings)
            bbox, corrected = imageoperations.checkMask(img, msk, **settings)
            msk = corrected if corrected is not None else msk
            reseg = None
            if settings.get("resegmentRange") is not None:
                reseg = imageoperations.resegmentMask(img, msk, **settings)
                bbox, _ = imageoperations.checkMask(img, reseg, **settings)
            shape_mask = reseg if settings.get("resegmentShape") and reseg is not None else msk
            vector = dict(ext.computeShape(img, shape_mask, bbox, **settings))
            state[reader] = (reseg if reseg is not None else msk, bbox, vector)
            base = img if base is None else base
        except (ValueError, RuntimeError) as err:
            errors[reader] = _pyradiomics_error(case, paths[reader], err)

    def add(reader, filtered, name, kwargs):
        msk, bbox, vector = state[reader]
        try:
            cropped, cmask = imageoperations.cropToTumorMask(filtered, msk, bbox, padDistance=0)
            vector.update(ext.computeFeatures(cropped, cmask, name, **kwargs))
        except (ValueError, RuntimeError) as err:
            errors[reader] = _pyradiomics_error(case, paths[reader], err)
            del state[reader]

    for image_type, custom in ext.enabledImagetypes.items():
        if not state:
            break
        args = {**settings, **custom}
        make = getattr(imageoperations, f"get{image_type}Image")
        if image_type in MASK_DEPENDENT_FILTERS:
            for reader in list(state):
                try:
                    for filtered, name, kwargs in make(base, state[reader][0], **args):
                        if reader in state:
                            add(reader, filtered, name, kwargs)
                except (ValueError, RuntimeError) as err:
                    errors[reader] = _pyradiomics_error(case, paths[reader], err)
                    state.pop(reader, None)
            continue
        try:
            first = next(iter(state.values()))[0]
            for filtered, name, kwargs in make(base, first, **args):
                for reader in list(state):
                    add(reader, filtered, name, kwargs)
        except (ValueError, RuntimeError) as err:  # the filter failed on the image itself
            for reader in list(state):
                errors[reader] = _pyradiomics_error(case, paths[reader], err)
            state.clear()
    return {reader: vector for reader, (_, _, vector) in state.items()}


def feature_vectors(case: str, seq: str, image_path, mask_paths: dict, cfg: dict):
    """pyradiomics features of one image for several masks (readers).

    Returns ``(vectors, errors)``: ``{seq}__{feature} -> value`` (diagnostics
    dropped, names sorted, float) per reader that worked, and a
    :class:`CaseError` per reader that did not (a bad mask excludes only that
    reader). Filters are computed once for all masks (:func:`_execute_shared`)
    unless pyradiomics' own resampling or preCrop make the image mask-dependent.
    No pandas here: a batch job's per-case processes need numpy, SimpleITK and
    pyradiomics only (pandas alone takes ~0.7 s to import).
    """
    cfg = {**DEFAULTS, **(cfg or {})}
    params = load_params(cfg)
    image = sitk.ReadImage(str(image_path))
    axis = None
    if cfg["mode"] == "2d":
        axis = axial_axis(image)
        if params["setting"].get("force2D"):
            params["setting"]["force2Ddimension"] = axis
    label = int(params["setting"].get("label", 1))
    ext = extractor_from(params)
    masks, errors = {}, {}
    for reader, path in sorted(mask_paths.items()):
        try:
            masks[reader] = _reader_mask(case, path, label, axis)
        except CaseError as err:
            errors[reader] = err
    # pyradiomics has no random step: same inputs, same values
    if _image_depends_on_mask(ext.settings):
        results = {}
        for reader, mask in masks.items():
            try:
                results[reader] = ext.execute(image, mask)
            except (ValueError, RuntimeError) as err:
                errors[reader] = _pyradiomics_error(case, mask_paths[reader], err)
    else:
        results = _execute_shared(ext, image, masks, errors, case, mask_paths)
    vectors = {}
    for reader, result in results.items():
        values = {
            f"{seq}__{k}": float(np.real(np.asarray(v)))  # pyradiomics may give complex
            for k, v in result.items()
            if not k.startswith("diagnostics_")
        }
        vectors[reader] = dict(sorted(values.items()))
    return vectors, errors


def compute_features(case: str, seq: str, image_path, mask_paths: dict, cfg: dict):
    """:func:`feature_vectors` as one-row tables indexed by case_id (float64)."""
    import pandas as pd

    vectors, errors = feature_vectors(case, seq, image_path, mask_paths, cfg)
    rows = {
        reader: pd.DataFrame([values], index=pd.Index([case], name="case_id")).astype("float64")
        for reader, values in vectors.items()
    }
    return rows, errors


def extract_case(case: str, seq: str, reader: str, image_path, mask_path, out_parquet, cfg: dict):
    """One-row table ``{seq}__{feature}`` (diagnostics dropped), written as parquet."""
    from radstudy.tables import write_feature_row

    rows, errors = compute_features(case, seq, image_path, {reader: mask_path}, cfg)
    if reader in errors:
        raise errors[reader]
    write_feature_row(rows[reader], out_parquet)
    return rows[reader]


def case_features(case: str, seq: str, image_path, masks: dict, cfg: dict):
    """Features of one case x sequence for the readers in ``masks`` (reader -> path).

    An exclusion marker among the inputs is passed on (the image's to every
    reader, a mask's to its reader); a reader whose mask fails is excluded with its
    one-line reason and the other readers go on; a failure of the whole case
    (:func:`radstudy.casestep.case_step_reason`) excludes every reader.
    Returns ``(vectors, reasons)``: reader -> {feature: value}, reader -> reason.
    """
    reasons: dict[str, str] = {}
    image_marked = marker_reason(image_path) is not None
    todo = {}
    for r in sorted(masks):  # a mask's marker excludes its reader only
        reason = None if image_marked else marker_reason(masks[r])
        if reason is None:
            todo[r] = masks[r]
        else:
            log.warning("excluded: %s (reader %s)", reason, r)
            reasons[r] = reason
    rows: dict[str, dict] = {}

    def step():
        got, errors = feature_vectors(case, seq, image_path, todo, cfg)
        rows.update(got)
        for reader, err in sorted(errors.items()):
            log.warning("excluded: %s (reader %s)", err, reader)
            reasons[reader] = str(err)

    if todo:  # the image's marker, or a failure of the whole case, excludes every reader
        reason = case_step_reason(case, [image_path], step)
        if reason is not None:
            rows.clear()
            reasons.update(dict.fromkeys(todo, reason))
    return rows, reasons


def warm_up(cfg: dict) -> None:
    """Import what an extraction needs before the per-case processes are forked
    (:func:`radstudy.casestep.run_isolated`), so that it is imported once per job.
    pyradiomics' LBP3D filter imports scipy.stats and trimesh inside the filter
    function (0.8 s per process)."""
    params = load_params(cfg)
    extractor_from(params)
    if "LBP3D" in (params.get("imageType") or {}):
        import scipy.ndimage  # noqa: F401
        import scipy.special  # noqa: F401
        import scipy.stats  # noqa: F401
        import trimesh.creation  # noqa: F401


def largest_first(cases: dict) -> list[str]:
    """Cases of a batch, the largest regions of interest first (ties by case id), so
    that the longest case does not start last and run alone at the end of the job
    (10 real STS cases on 2 workers: 9 s for the largest, started 7th in id order).
    Size: bytes of the masks to extract (compressed, they track the ROI's extent;
    measured on the STS volumes: same order as their extraction times)."""

    def size(case):
        paths = [Path(p) for p in cases[case]["masks"].values()]
        return sum(p.stat().st_size for p in paths if p.is_file())

    return sorted(cases, key=lambda c: (-size(c), c))


def _batch_case(arg):
    case, seq, image, masks, cfg, threads = arg
    limit_threads(threads)  # this case's share of the job's threads, for ITK's filters
    t0 = time.perf_counter()
    vectors, reasons = case_features(case, seq, image, masks, cfg)
    return vectors, reasons, time.perf_counter() - t0


def extract_batch(
    seq: str, cases: dict, cfg: dict, out_features, out_excluded, workers: int = 1
) -> list[tuple[str, str, str]]:
    """Features of a batch of cases of one sequence, each case in its own forked
    process (at most ``workers`` at once; see :func:`radstudy.casestep.run_isolated`).

    ``cases``: case -> ``{"image": path, "masks": {reader: path}}`` (the readers to
    extract). Writes ``out_features``, a long table (case_id, reader, feature,
    value) sorted by case, reader and feature, and ``out_excluded`` (TSV: case_id,
    reader, reason) for every case x reader that could not be extracted; a case
    whose process crashes is excluded with how it crashed, the others go on.
    Returns the exclusions as sorted (case_id, reader, reason) tuples.

    The job's ``workers`` threads are shared out: each case process keeps ITK to
    its share (one thread when two cases run at once on two threads), so that
    cases at once do not oversubscribe the cores with ITK's filter threads
    (measured: 2 cases x 2 ITK threads on 2 cores, each ~20 % slower than with 1).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    warm_up(cfg)
    workers = max(1, workers)
    share = workers // max(1, min(workers, len(cases)))  # >= 1: at most workers at once
    items = {c: (c, seq, v["image"], dict(v["masks"]), cfg, share) for c, v in cases.items()}
    done: dict[str, dict] = {}
    excluded = []
    t0 = time.perf_counter()
    runs = run_isolated(_batch_case, items, workers, order=largest_first(cases))
    for i, (case, status, value) in enumerate(runs, 1):
        if status == "ok":
            done[case], reasons, took = value
            log.info(
                "case %d/%d %s: %d reader(s) extracted, %d excluded, %.1f s",
                i,
                len(items),
                case,
                len(done[case]),
                len(reasons),
                took,
            )
        else:
            what = "failed" if status == "error" else "crashed"
            reason = f"case {case}: {cases[case]['image']}: feature extraction {what}: {value}"
            log.warning("excluded: %s", reason)
            reasons = dict.fromkeys(cases[case]["masks"], reason)
        excluded += [(case, r, " ".join(str(why).split())) for r, why in reasons.items()]
    log.info("%d case(s) in %.1f s", len(items), time.perf_counter() - t0)
    cols: dict[str, list] = {"case_id": [], "reader": [], "feature": [], "value": []}
    for case in sorted(done):  # sorted rows: same config, same bytes
        for reader in sorted(done[case]):
            names = sorted(done[case][reader])
            cols["case_id"] += [case] * len(names)
            cols["reader"] += [reader] * len(names)
            cols["feature"] += names
            cols["value"] += [done[case][reader][n] for n in names]
    types = {"case_id": pa.string(), "reader": pa.string(), "feature": pa.string()}
    table = pa.table({k: pa.array(v, type=types.get(k, pa.float64())) for k, v in cols.items()})
    Path(out_features).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_features)
    excluded.sort()
    lines = ["case_id\treader\treason"] + ["\t".join(row) for row in excluded]
    Path(out_excluded).write_text("\n".join(lines) + "\n")
    return excluded
