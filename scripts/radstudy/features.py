"""pyradiomics feature extraction for one case x sequence x reader."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from radstudy.errors import CaseError

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
    """Params YAML merged with ``settings`` overrides (settings win)."""
    params = yaml.safe_load(params_path(cfg["params"]).read_text())
    params.setdefault("setting", {})
    params["setting"] = {**(params["setting"] or {}), **(cfg.get("settings") or {})}
    if cfg.get("mode") == "2d":
        params["setting"].update({"force2D": True, "force2Ddimension": 0})
        params.get("featureClass", {}).pop("shape", None)
    return params


def largest_slice_mask(mask: np.ndarray) -> np.ndarray:
    """Keep only the axial slice (numpy axis 0) with the largest ROI area."""
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    z = int(np.argmax(areas))  # first of equal maxima: deterministic
    out = np.zeros_like(mask)
    out[z] = mask[z]
    return out


def extractor_from(params: dict):
    from radiomics import featureextractor  # pyradiomics

    return featureextractor.RadiomicsFeatureExtractor(params)


def extract_case(
    case: str, seq: str, reader: str, image_path, mask_path, out_parquet, cfg: dict
) -> pd.DataFrame:
    """One-row table ``{seq}__{feature}`` (diagnostics dropped), written as parquet."""
    cfg = {**DEFAULTS, **(cfg or {})}
    params = load_params(cfg)
    image = sitk.ReadImage(str(image_path))
    mask = sitk.ReadImage(str(mask_path))
    if cfg.get("mode") == "2d":
        arr = largest_slice_mask(sitk.GetArrayFromImage(mask))
        m2 = sitk.GetImageFromArray(arr)
        m2.CopyInformation(mask)
        mask = m2
    label = int(params["setting"].get("label", 1))
    if not (sitk.GetArrayViewFromImage(mask) == label).any():
        raise CaseError(case, mask_path, f"mask has no voxel with label {label}")
    ext = extractor_from(params)
    try:
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
