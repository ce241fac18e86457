"""Synthetic multi-center MRI/CT cohort: the default demo data and the test cohort.

A continuous phantom (body, liver, blobby tumor with texture) is rendered on
each center's own voxel grid, with that center's scanner effects: voxel
spacing, smooth multiplicative bias field, gain/offset and noise. The tumor's
heterogeneity and size drive a binary outcome and an event-free survival time;
clinical variables (age, sex, AFP, PRETEXT) add their own effects. Reader masks
disagree at the boundary like real readers; R1r repeats R1.

Every case draws from its own seeded generator (seed, center name, index), so a
case's files never depend on how many other cases or centers exist: adding a
center later leaves the old centers' files byte-identical.
"""

from __future__ import annotations

import argparse
import copy
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

DEFAULTS: dict = {
    "seed": 42,
    "modality": "MRI",
    "sequences": ["T1", "T2"],
    "readers": ["R1", "R2", "R3", "R1r"],
    "fov_mm": 64.0,
    "test_fraction": 0.25,
    "centers": [
        {
            "name": "A",
            "n": 18,
            "role": "train",
            "spacing": [0.8, 0.8, 5.0],
            "field_strength": 1.5,
            "gain": 1.0,
            "offset": 0.0,
            "noise": 0.08,
            "bias": 0.3,
        },
        {
            "name": "B",
            "n": 16,
            "role": "train",
            "spacing": [1.5, 1.5, 1.5],
            "field_strength": 3.0,
            "gain": 1.6,
            "offset": 40.0,
            "noise": 0.04,
            "bias": 0.15,
        },
        {
            "name": "C",
            "n": 14,
            "role": "train",
            "spacing": [1.0, 1.0, 1.0],
            "field_strength": 3.0,
            "gain": 0.8,
            "offset": -15.0,
            "noise": 0.05,
            "bias": 0.2,
        },
        {
            "name": "D",
            "n": 12,
            "role": "external",
            "spacing": [1.2, 1.2, 3.0],
            "field_strength": 1.5,
            "gain": 1.3,
            "offset": 20.0,
            "noise": 0.07,
            "bias": 0.25,
        },
    ],
}

# tissue intensities per sequence (arbitrary MR units) / HU for CT
TISSUE = {
    "T1": {"air": 5.0, "body": 300.0, "liver": 420.0, "tumor": 260.0},
    "T2": {"air": 5.0, "body": 220.0, "liver": 160.0, "tumor": 380.0},
    "CT": {"air": -1000.0, "body": -80.0, "liver": 60.0, "tumor": 35.0},
}
# reader boundary behaviour: (systematic dilation in mm, boundary noise amplitude in mm)
READER_STYLE = {"R1": (0.0, 0.8), "R2": (0.3, 0.9), "R3": (1.2, 1.8)}


def _case_rng(seed: int, center: str, index: int, salt: str = "") -> np.random.Generator:
    key = zlib.crc32(f"{center}/{index}/{salt}".encode())
    return np.random.default_rng([int(seed), key])


def _smooth_noise(rng, shape, sigma_vox) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return field / (field.std() + 1e-12)


def _grid(center: dict, fov: float):
    spacing = np.asarray(center["spacing"], float)  # x, y, z (SimpleITK order)
    size = np.maximum(np.round(fov / spacing).astype(int), 4)
    origin = -0.5 * (size - 1) * spacing
    # world coordinates (mm) of voxel centers, arrays in numpy z, y, x order
    z = origin[2] + spacing[2] * np.arange(size[2])
    y = origin[1] + spacing[1] * np.arange(size[1])
    x = origin[0] + spacing[0] * np.arange(size[0])
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    return spacing, size, origin, X, Y, Z


def _latent_case(rng: np.random.Generator, fov: float) -> dict:
    """Case-level truth: tumor geometry, texture, clinical variables and risk."""
    radius = rng.uniform(0.10, 0.22) * fov
    hetero = rng.uniform(0.0, 1.0)
    center = rng.uniform(-0.06, 0.06, 3) * fov + np.array([0.05 * fov, 0.0, 0.0])
    axes = radius * rng.uniform(0.8, 1.2, 3)
    age = float(np.round(rng.gamma(3.0, 8.0), 1))  # months
    sex = int(rng.integers(0, 2))
    vol_ml = 4.0 / 3.0 * np.pi * np.prod(axes) / 1000.0
    # size effect relative to the field of view, so a smaller test phantom keeps
    # the same outcome balance as the default one
    z_size = (radius / fov - 0.16) / 0.035
    pretext = int(np.clip(np.round(2.5 + 0.9 * z_size + rng.normal(0, 0.5)), 1, 4))
    risk = 0.9 * (hetero - 0.5) / 0.29 + 0.6 * z_size + 0.2 * (age - 24) / 14 + rng.normal(0, 0.7)
    afp = float(np.round(np.exp(rng.normal(8.0 + 0.5 * risk, 1.0)), 1))
    risk_total = risk + 0.3 * (np.log(afp) - 8.0)
    return {
        "radius": radius,
        "axes": axes,
        "tumor_center": center,
        "heterogeneity": hetero,
        "age": age,
        "sex": sex,
        "pretext": pretext,
        "afp": afp,
        "risk": float(risk_total),
        "volume_ml_nominal": float(vol_ml),
    }


def _tumor_level(X, Y, Z, t: dict, rng, fov) -> np.ndarray:
    """Signed 'inside' field of the blobby tumor (> 0 inside), in world mm."""
    dx, dy, dz = X - t["tumor_center"][0], Y - t["tumor_center"][1], Z - t["tumor_center"][2]
    r = np.sqrt((dx / t["axes"][0]) ** 2 + (dy / t["axes"][1]) ** 2 + (dz / t["axes"][2]) ** 2)
    theta = np.arctan2(dy, dx)
    phi = np.arctan2(dz, np.sqrt(dx**2 + dy**2))
    c = t["lobes"]
    wobble = c[0] * np.cos(3 * theta + c[1]) * np.cos(phi) + c[2] * np.sin(2 * phi + c[3])
    return (1.0 + 0.12 * wobble) - r


def generate_case(center: dict, index: int, spec: dict) -> tuple[dict, dict]:
    """Render one case on its center's grid; return (arrays + geometry, truth row)."""
    fov = float(spec["fov_mm"])
    rng = _case_rng(spec["seed"], center["name"], index)
    t = _latent_case(rng, fov)
    t["lobes"] = rng.uniform(-1, 1, 4)
    spacing, size, origin, X, Y, Z = _grid(center, fov)
    body = ((X / (0.46 * fov)) ** 2 + (Y / (0.40 * fov)) ** 2 + (Z / (0.6 * fov)) ** 2) < 1
    liver = (
        ((X - 0.06 * fov) / (0.34 * fov)) ** 2
        + ((Y + 0.02 * fov) / (0.30 * fov)) ** 2
        + (Z / (0.40 * fov)) ** 2
    ) < 1
    level = _tumor_level(X, Y, Z, t, rng, fov)
    tumor = (level > 0) & liver
    # texture: smooth noise whose amplitude is the heterogeneity, plus a necrotic core
    tex_rng = _case_rng(spec["seed"], center["name"], index, "texture")
    # texture is defined in world space at a fixed 1 mm reference grid, then sampled
    ref = 48
    tex = _smooth_noise(tex_rng, (ref, ref, ref), 1.2)
    coords = [(C + fov / 2) / fov * (ref - 1) for C in (Z, Y, X)]
    tex = ndimage.map_coordinates(tex, coords, order=1, mode="nearest")
    core = level > (0.55 - 0.35 * t["heterogeneity"])
    truth = {"tumor": tumor.astype(np.uint8), "liver": liver.astype(np.uint8)}
    images = {}
    for seq in spec["sequences"]:
        tis = TISSUE["CT" if spec["modality"] == "CT" else seq]
        img = np.full(X.shape, tis["air"], float)
        img[body] = tis["body"]
        img[liver] = tis["liver"]
        amp = (0.05 + 0.35 * t["heterogeneity"]) * abs(tis["tumor"] - tis["liver"] + 80)
        tumor_val = tis["tumor"] + amp * tex
        necrosis = -0.5 * (tis["tumor"] - tis["liver"]) * t["heterogeneity"]
        tumor_val = tumor_val + np.where(core, necrosis, 0.0)
        img[tumor] = tumor_val[tumor]
        if spec["modality"] == "CT":
            noise = rng.normal(0, 12.0 * center.get("noise", 0.05) / 0.05, X.shape)
            img = img + noise
            images[seq] = np.round(img).astype(np.int16)
            continue
        # scanner: smooth multiplicative bias, gain/offset, Rician-like noise
        bias = 1.0 + center["bias"] * (0.6 * X / fov + 0.4 * Y / fov + 0.5 * (Z / fov) ** 2)
        img = img * bias
        img = center["gain"] * img + center["offset"]
        sd = center["noise"] * 300.0
        img = np.sqrt((img + rng.normal(0, sd, X.shape)) ** 2 + rng.normal(0, sd, X.shape) ** 2)
        images[seq] = img.astype(np.float32)
    # readers: displaced boundaries via a smooth perturbation of the level set
    masks = {}
    mm = np.mean(spacing)
    for reader in spec["readers"]:
        base = reader[:-1] if reader.endswith("r") and reader[:-1] in READER_STYLE else reader
        dil, amp = READER_STYLE.get(base, (0.5, 1.2))
        salt = "reader-" + reader
        r_rng = _case_rng(spec["seed"], center["name"], index, salt)
        pert = _smooth_noise(r_rng, X.shape, sigma_vox=max(1.0, 4.0 / mm))
        shift = (dil + amp * 0.6 * pert) / t["radius"]
        masks[reader] = (((level + shift) > 0) & liver).astype(np.uint8)
    geometry = {"spacing": spacing, "origin": origin}
    row = {
        "true_volume_ml": float(truth["tumor"].sum() * np.prod(spacing) / 1000.0),
        "heterogeneity": t["heterogeneity"],
        "risk": t["risk"],
        "age": t["age"],
        "sex": t["sex"],
        "afp": t["afp"],
        "pretext": t["pretext"],
    }
    return {"images": images, "masks": masks, "truth": truth, "geometry": geometry}, row


def _write(arr: np.ndarray, geometry: dict, path: Path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in geometry["spacing"]))
    img.SetOrigin(tuple(float(o) for o in geometry["origin"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def _merge(spec: dict | None) -> dict:
    out = copy.deepcopy(DEFAULTS)
    for k, v in (spec or {}).items():
        out[k] = copy.deepcopy(v)
    if out["modality"] == "CT" and "sequences" not in (spec or {}):
        out["sequences"] = ["CT"]
    return out


def _outcomes(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Binary label and event-free survival from each case's latent risk.

    Each case's draws come from its own generator so outcomes, like images,
    do not depend on the rest of the cohort. The label threshold is fixed (not a
    cohort quantile) for the same reason.
    """
    label, time, event, desc = [], [], [], []
    for _, r in rows.iterrows():
        rng = _case_rng(seed, r["center"], int(r["index"]), "outcome")
        label.append(int(r["risk"] + rng.normal(0, 0.8) > 0.2))
        t_event = rng.exponential(60.0 * np.exp(-0.9 * r["risk"]))
        t_cens = rng.uniform(12.0, 96.0)
        time.append(round(float(min(t_event, t_cens)), 2))
        event.append(int(t_event <= t_cens))
        desc.append(
            (
                int(np.clip(round(r["heterogeneity"] * 2 + rng.normal(0, 0.5) + 0.5), 0, 3)),
                int(np.clip(round(r["heterogeneity"] * 3 + rng.normal(0, 0.6)), 0, 3)),
                int(r["heterogeneity"] + rng.normal(0, 0.25) > 0.6),
            )
        )
    out = rows.copy()
    out["label"], out["efs_time"], out["efs_event"] = label, time, event
    out["desc_border"] = [d[0] for d in desc]
    out["desc_heterogeneity"] = [d[1] for d in desc]
    out["desc_septations"] = [d[2] for d in desc]
    return out


def _splits(rows: pd.DataFrame, center: dict, spec: dict) -> list[str]:
    """Seeded, label-stratified train/test split within a training center."""
    if center["role"] == "external":
        return ["external"] * len(rows)
    rng = np.random.default_rng([int(spec["seed"]), zlib.crc32(center["name"].encode())])
    split = np.array(["train"] * len(rows), dtype=object)
    for lab in (0, 1):
        idx = np.flatnonzero(rows["label"].to_numpy() == lab)
        n_test = int(round(spec["test_fraction"] * len(idx)))
        split[rng.permutation(idx)[:n_test]] = "test"
    return list(split)


def generate_cohort(out_dir: str | Path, spec: dict | None = None) -> Path:
    """Write the synthetic cohort (images, masks, truth, cases.tsv) into ``out_dir``."""
    spec = _merge(spec)
    out = Path(out_dir)
    rows, centers = [], []
    for center in spec["centers"]:
        centers.append({k: (str(v) if isinstance(v, list) else v) for k, v in center.items()})
        crow = []
        for i in range(int(center["n"])):
            case = f"{center['name']}{i + 1:03d}"
            data, truth = generate_case(center, i, spec)
            geo = data["geometry"]
            for seq, arr in data["images"].items():
                _write(arr, geo, out / "images" / f"{case}_{seq}.nii.gz")
            for reader, arr in data["masks"].items():
                _write(arr, geo, out / "masks" / f"{case}_{reader}.nii.gz")
            _write(data["truth"]["liver"], geo, out / "masks" / f"{case}_liver.nii.gz")
            _write(data["truth"]["tumor"], geo, out / "truth" / case / "mask_true.nii.gz")
            crow.append({"case_id": case, "center": center["name"], "index": i, **truth})
        cdf = _outcomes(pd.DataFrame(crow), spec["seed"])
        cdf["split"] = _splits(cdf, center, spec)
        cdf["field_strength"] = center.get("field_strength", np.nan)
        rows.append(cdf)
    df = pd.concat(rows, ignore_index=True)
    sheet = pd.DataFrame({"case_id": df["case_id"], "center": df["center"], "split": df["split"]})
    for seq in spec["sequences"]:
        sheet[f"image_{seq}"] = [f"images/{c}_{seq}.nii.gz" for c in df["case_id"]]
    for reader in spec["readers"]:
        sheet[f"mask_{reader}"] = [f"masks/{c}_{reader}.nii.gz" for c in df["case_id"]]
    sheet["organ_mask"] = [f"masks/{c}_liver.nii.gz" for c in df["case_id"]]
    for col in [
        "age",
        "sex",
        "afp",
        "pretext",
        "desc_border",
        "desc_heterogeneity",
        "desc_septations",
        "label",
        "efs_time",
        "efs_event",
        "field_strength",
    ]:
        sheet[col] = df[col]
    sheet_path = out / "cases.tsv"
    sheet.to_csv(sheet_path, sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    truth_cols = ["case_id", "center", "split", "true_volume_ml", "heterogeneity", "risk", "label"]
    (out / "truth").mkdir(parents=True, exist_ok=True)
    df[truth_cols].to_csv(
        out / "truth" / "cases_truth.tsv",
        sep="\t",
        index=False,
        float_format="%.6g",
        lineterminator="\n",
    )
    pd.DataFrame(centers).to_csv(
        out / "truth" / "centers.tsv", sep="\t", index=False, lineterminator="\n"
    )
    return sheet_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the synthetic radstudy cohort.")
    ap.add_argument("--out", required=True, help="output folder (cases.tsv + images)")
    ap.add_argument("--n-cases", type=int, help="scale the default centers to about N cases")
    ap.add_argument("--seed", type=int, help="seed (default 42)")
    args = ap.parse_args(argv)
    spec: dict = {}
    if args.seed is not None:
        spec["seed"] = args.seed
    if args.n_cases:
        total = sum(c["n"] for c in DEFAULTS["centers"])
        spec["centers"] = [
            {**c, "n": max(2, round(c["n"] * args.n_cases / total))} for c in DEFAULTS["centers"]
        ]
    print(generate_cohort(args.out, spec))


if __name__ == "__main__":
    main()
