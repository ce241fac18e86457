"""pyradiomics feature extraction for one case x sequence x reader.

The params YAML (``cfg["params"]``) says image types, feature classes and
settings; ``cfg["settings"]`` overrides settings. 2D mode (``cfg["mode"] ==
"2d"``) keeps the single axial slice with the largest ROI area: texture is then
in-plane by construction (identical to pyradiomics' force2D on that slice), and
image filters stay as the params file says (3D wavelet: 8 decompositions).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from radstudy.errors import CaseError, ConfigError

log = logging.getLogger(__name__)
PARAMS_DIR = Path(__file__).parent / "params"
DEFAULTS = {"params": "mri_fast.yaml", "settings": {}, "mode": "3d"}


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


def extractor_from(params: dict):
    """A pyradiomics extractor; a params dict that fails its schema is a ConfigError."""
    from radiomics import featureextractor  # pyradiomics

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


def extract_case(
    case: str, seq: str, reader: str, image_path, mask_path, out_parquet, cfg: dict
) -> pd.DataFrame:
    """One-row table ``{seq}__{feature}`` (diagnostics dropped), written as parquet."""
    cfg = {**DEFAULTS, **(cfg or {})}
    params = load_params(cfg)
    image = sitk.ReadImage(str(image_path))
    mask = sitk.ReadImage(str(mask_path))
    if cfg["mode"] == "2d":
        axis = axial_axis(image)
        m2 = sitk.GetImageFromArray(largest_slice_mask(sitk.GetArrayFromImage(mask), axis))
        m2.CopyInformation(mask)
        mask = m2
        if params["setting"].get("force2D"):
            params["setting"]["force2Ddimension"] = axis
    label = int(params["setting"].get("label", 1))
    if not (sitk.GetArrayViewFromImage(mask) == label).any():
        raise CaseError(case, mask_path, f"mask has no voxel with label {label}")
    ext = extractor_from(params)
    try:  # pyradiomics has no random step: same inputs, same values
        result = ext.execute(image, mask)
    except (ValueError, RuntimeError) as err:
        raise CaseError(
            case, mask_path, f"pyradiomics failed: {str(err).splitlines()[0][:200]}"
        ) from err
    values = {
        f"{seq}__{k}": float(np.asarray(v, dtype=float))
        for k, v in result.items()
        if not k.startswith("diagnostics_")
    }
    row = pd.DataFrame([values], index=pd.Index([case], name="case_id"))
    row = row[sorted(row.columns)].astype("float64")
    Path(out_parquet).parent.mkdir(parents=True, exist_ok=True)
    row.to_parquet(out_parquet)
    return row
