"""Synthetic multi-center MRI/CT cohort: the default demo data and the test cohort.

Each case is a continuous phantom in world coordinates (mm): a body ellipsoid
with a fat shell, a liver, and a blobby tumor inside the liver whose shape
irregularity, size and texture heterogeneity (smooth noise, necrotic core,
septations) vary per case. The phantom is rendered on each center's own voxel
grid (partial-volume averaged over each voxel), with that center's scanner
effects: voxel spacing, a smooth multiplicative bias field, gain/offset, noise.
All sequences of a case share one grid, so a reader mask applies to each.

The tumor (heterogeneity, log volume, irregularity) and the clinical variables
(AFP, PRETEXT, age) drive a latent risk; the binary ``label`` is that risk above
a fixed threshold and the event-free survival time is Weibull with hazard
proportional to ``exp(risk)`` under independent uniform censoring.

Reader masks disagree at the boundary like real readers: a smooth random
boundary displacement plus a systematic dilation (positive) or erosion
(negative) per reader; a repeat reading (reader name + ``r``, e.g. ``R1r``)
shares part of its reader's displacement. Ground truth (true mask, latent
variables, center effects) is written under ``truth/``.

Every case draws from its own generators, seeded by (seed, center name, case
index, purpose), and every fixed threshold is a constant rather than a cohort
quantile, so a case's files never depend on how many other cases, centers,
sequences or readers exist: adding a center later leaves the old files
byte-identical.

The phantom is written here because the field libraries do not provide one:
MONAI/TorchIO-style augmentations (bias field, noise) alter an existing image
and carry no ground truth for size, texture, outcome or reader disagreement.
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

from radstudy.errors import ConfigError

DEFAULTS: dict = {
    "seed": 42,
    "modality": "MRI",
    "sequences": ["T1", "T2"],
    "readers": ["R1", "R2", "R3", "R1r"],
    "fov_mm": 64.0,
    "test_fraction": 0.25,
    # reader -> [systematic boundary shift in mm (+ dilation, - erosion),
    #            sd in mm of the smooth random boundary displacement]
    "reader_styles": {"R1": [0.0, 0.5], "R2": [0.4, 0.6], "R3": [-1.2, 1.3]},
    # share of a repeat reading's boundary displacement taken from its reader's
    "repeat_correlation": 0.8,
    # share of cases whose AFP or PRETEXT cell is left empty (inclusion-criteria demos)
    "missing_fraction": 0.0,
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

# default style of a reader not listed in reader_styles (between expert and novice)
_OTHER_READER = (0.6, 0.9)

# Tissue values per sequence: MR in arbitrary units before the scanner's gain,
# CT in HU. Tumor hypo on T1 and hyper on T2; necrosis is fluid (dark T1,
# bright T2); septa are fibrous (dark T2). Order = tissue code of _TISSUES.
_TISSUES = ("air", "soft", "fat", "liver", "tumor", "necrosis", "septum")
TISSUE = {
    "T1": {"air": 5, "soft": 260, "fat": 520, "liver": 420, "tumor": 270, "necrosis": 120,
           "septum": 330},
    "T2": {"air": 5, "soft": 150, "fat": 330, "liver": 140, "tumor": 380, "necrosis": 600,
           "septum": 180},
    "CT": {"air": -1000, "soft": 45, "fat": -100, "liver": 60, "tumor": 40, "necrosis": 15,
           "septum": 70},
}  # fmt: skip
# texture amplitude (sd of the smooth noise in the tumor) at heterogeneity 1
_TEXTURE_SD = {"T1": 70.0, "T2": 110.0, "CT": 18.0}
# MR noise sd = center noise x this reference signal; CT noise sd = noise x 240 HU
_NOISE_REF = {"MRI": 300.0, "CT": 240.0}

# tumor mean radius as a fraction of the field of view: 0.10 + 0.11 * size, size ~ U(0, 1)
_R0, _R1 = 0.10, 0.11
# mean and sd of log(volume / fov^3) over size ~ U(0, 1) for a sphere of that radius,
# used to standardise log volume (a constant, never a cohort statistic)
_s = (np.arange(2000) + 0.5) / 2000
_lv = np.log(4.0 / 3.0 * np.pi * (_R0 + _R1 * _s) ** 3)
_LOGVOL_MEAN, _LOGVOL_SD = float(_lv.mean()), float(_lv.std())
del _s, _lv

# outcome model (latent risk is roughly standard normal; see _latent_case)
_LABEL_THRESHOLD = 0.1  # about 47 % positives over the latent risk distribution
_WEIBULL_SHAPE = 1.3
_WEIBULL_SCALE = 36.0  # months, at risk 0
_CENSOR_MAX = 120.0  # months, uniform censoring U(6, 120)


def _rng(seed: int, *key: object) -> np.random.Generator:
    """A generator seeded by the study seed and a key (center, index, purpose)."""
    return np.random.default_rng([int(seed), zlib.crc32("/".join(map(str, key)).encode())])


class _Field:
    """Smooth random field on a regular grid over a cube (world mm), sampled trilinearly.

    Gaussian-smoothed white noise standardised to mean 0, sd 1, on a grid whose
    step is 1 mm or half the smoothing sigma if larger, so that large smooth
    fields stay cheap. Sampling on an axis-aligned target grid is separable, so it is
    done with three small 1-D interpolation matrices (tensor products) instead
    of a per-point ``map_coordinates``: several times faster here.
    """

    def __init__(self, rng: np.random.Generator, lo: np.ndarray, extent: float, sigma_mm: float):
        self.step = max(1.0, sigma_mm / 2.0)
        self.lo = np.asarray(lo, float)  # world x, y, z of the grid corner
        n = int(np.ceil(extent / self.step)) + 1
        noise = rng.standard_normal((n, n, n))
        f = ndimage.gaussian_filter(noise, sigma_mm / self.step, mode="reflect", truncate=3.0)
        self.values = (f - f.mean()) / (f.std() + 1e-12)

    def _weights(self, coords: np.ndarray, axis: int) -> np.ndarray:
        n = self.values.shape[2 - axis]
        u = np.clip((coords - self.lo[axis]) / self.step, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(u).astype(int), n - 2)
        w = u - i0
        m = np.zeros((coords.size, n))
        m[np.arange(coords.size), i0] = 1.0 - w
        m[np.arange(coords.size), i0 + 1] = w
        return m

    def sample(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Values on the grid of 1-D world axes, array in z, y, x order."""
        wz, wy, wx = self._weights(zs, 2), self._weights(ys, 1), self._weights(xs, 0)
        out = np.tensordot(wz, self.values, axes=(1, 0))  # z, Y, X
        out = np.matmul(wy, out)  # (y, Y) @ (z, Y, X) -> z, y, X
        return out @ wx.T

    def combine(self, other: _Field, rho: float) -> _Field:
        """rho * other + sqrt(1 - rho^2) * self (same grid): a correlated field."""
        out = copy.copy(self)
        out.values = rho * other.values + np.sqrt(1.0 - rho**2) * self.values
        return out


def _latent_case(rng: np.random.Generator, fov: float) -> dict:
    """Case-level truth: tumor geometry and texture, clinical variables, risk."""
    size = rng.uniform()
    radius = (_R0 + _R1 * size) * fov
    axes = radius * rng.uniform(0.85, 1.15, 3)
    het = rng.uniform()
    irreg = rng.uniform()
    tumor_center = np.array([0.06, -0.02, 0.0]) * fov + rng.uniform(-0.04, 0.04, 3) * fov
    liver_axes = np.array([0.36, 0.32, 0.42]) * fov * rng.uniform(0.95, 1.05, 3)
    septa = int(rng.uniform() < 1.0 / (1.0 + np.exp(-6.0 * (het - 0.55))))
    grain_mm = rng.uniform(1.0, 2.0)
    age = float(np.round(rng.gamma(2.5, 10.0), 1))  # months, pediatric
    sex = int(rng.integers(0, 2))
    # standardised drivers: heterogeneity, log volume (nominal ellipsoid), irregularity
    z_het = (het - 0.5) / 0.2887
    log_vol = np.log(4.0 / 3.0 * np.pi * np.prod(axes) / fov**3)
    z_vol = (log_vol - _LOGVOL_MEAN) / _LOGVOL_SD
    z_irr = (irreg - 0.5) / 0.2887
    tumor_risk = 0.9 * z_het + 0.6 * z_vol + 0.25 * z_irr
    log_afp = rng.normal(8.5 + 0.7 * tumor_risk, 1.2)  # AFP raised with tumor burden
    pretext = int(np.clip(np.round(2.5 + 0.9 * z_vol + rng.normal(0, 0.5)), 1, 4))
    risk = (
        tumor_risk
        + 0.30 * (log_afp - 8.5) / 1.5
        + 0.20 * (pretext - 2.5)
        + 0.15 * (age - 25.0) / 16.0
        + rng.normal(0, 0.55)
    )
    return {
        "radius": radius,
        "axes": axes,
        "tumor_center": tumor_center,
        "liver_axes": liver_axes,
        "heterogeneity": het,
        "irregularity": irreg,
        "septations": septa,
        "grain_mm": grain_mm,
        "age": age,
        "sex": sex,
        "afp": float(np.round(np.exp(log_afp), 1)),
        "pretext": pretext,
        "risk": float(risk),
        "nominal_volume_ml": float(4.0 / 3.0 * np.pi * np.prod(axes) / 1000.0),
    }


class _Phantom:
    """One case's continuous phantom in world mm.

    Body and liver are analytic ellipsoids; the tumor's shape perturbation,
    texture, septa and each reader's boundary displacement are smooth random
    fields on a box around the tumor that depends only on the case, so a case's
    anatomy does not depend on the grid it is rendered on.
    """

    def __init__(self, t: dict, fov: float, rngs: dict):
        self.t, self.fov = t, fov
        half = 1.9 * float(np.max(t["axes"])) + 8.0
        self.box_lo = t["tumor_center"] - half  # world x, y, z of the box corner
        self.box_hi = t["tumor_center"] + half
        lo, ext = self.box_lo, 2 * half
        self.shape_field = _Field(rngs["shape"], lo, ext, 0.45 * t["radius"])
        self.texture = _Field(rngs["texture"], lo, ext, t["grain_mm"])
        self.septa_field = _Field(rngs["texture"], lo, ext, 3.0)
        self.rngs = rngs
        self._reader_fields: dict[str, _Field] = {}

    def box_slices(self, xs, ys, zs):
        """Index ranges of 1-D axes (world mm) that fall inside the tumor box."""
        out = []
        for ax, lo, h in zip((zs, ys, xs), self.box_lo[::-1], self.box_hi[::-1], strict=True):
            idx = np.flatnonzero((ax >= lo) & (ax <= h))
            out.append(slice(idx[0], idx[-1] + 1) if idx.size else slice(0, 0))
        return tuple(out)

    def level(self, xs, ys, zs) -> np.ndarray:
        """Approximate signed distance (mm, > 0 inside) to the tumor boundary."""
        t = self.t
        c, a = t["tumor_center"], t["axes"]
        r = np.sqrt(
            ((zs[:, None, None] - c[2]) / a[2]) ** 2
            + ((ys[None, :, None] - c[1]) / a[1]) ** 2
            + ((xs[None, None, :] - c[0]) / a[0]) ** 2
        )
        amp = (0.04 + 0.22 * t["irregularity"]) * t["radius"]
        pert = np.clip(self.shape_field.sample(xs, ys, zs), -2.5, 2.5)
        return t["radius"] * (1.0 - r) + amp * pert

    def reader_field(self, reader: str, base: str | None, rho: float) -> _Field:
        """Smooth unit-sd boundary displacement field of one reader (box grid)."""
        if reader not in self._reader_fields:
            ext = float(self.box_hi[0] - self.box_lo[0])
            own = _Field(self.rngs["reader"](reader), self.box_lo, ext, 3.0)
            if base is not None:
                own = own.combine(self.reader_field(base, None, rho), rho)
            self._reader_fields[reader] = own
        return self._reader_fields[reader]

    def regions(self, xs, ys, zs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body and liver masks on the full grid; tumor box slices."""
        fov, t = self.fov, self.t
        zz, yy, xx = zs[:, None, None], ys[None, :, None], xs[None, None, :]
        e_body = (xx / (0.46 * fov)) ** 2 + (yy / (0.40 * fov)) ** 2 + (zz / (0.65 * fov)) ** 2
        la = t["liver_axes"]
        e_liver = (
            ((xx - 0.06 * fov) / la[0]) ** 2 + ((yy + 0.02 * fov) / la[1]) ** 2 + (zz / la[2]) ** 2
        )
        return e_body, e_liver, self.box_slices(xs, ys, zs)

    def tissue(self, xs, ys, zs) -> tuple[np.ndarray, np.ndarray]:
        """Tissue codes (index into _TISSUES) and tumor texture on a grid."""
        t = self.t
        e_body, e_liver, box = self.regions(xs, ys, zs)
        code = np.zeros(np.broadcast_shapes(e_body.shape, e_liver.shape), np.uint8)
        code[e_body < 1.0] = 1
        code[(e_body >= 0.84) & (e_body < 1.0)] = 2  # subcutaneous fat shell
        liver = e_liver < 1.0
        code[liver] = 3
        tex = np.zeros(code.shape, np.float32)
        bx, by, bz = xs[box[2]], ys[box[1]], zs[box[0]]
        if bx.size and by.size and bz.size:
            lev = self.level(bx, by, bz)
            sub = code[box]
            tumor = (lev > 0) & liver[box]
            tex_box = self.texture.sample(bx, by, bz)
            # necrotic core: deeper than a depth that shrinks with heterogeneity,
            # with a texture-perturbed (irregular) edge
            depth = t["radius"] * (1.0 - 0.75 * max(0.0, t["heterogeneity"] - 0.3) / 0.7)
            core = tumor & (lev + 0.15 * t["radius"] * tex_box > depth)
            sub[tumor] = 4
            sub[core] = 5
            if t["septations"]:
                sep = tumor & ~core & (np.abs(self.septa_field.sample(bx, by, bz)) < 0.12)
                sub[sep] = 6
            code[box] = sub
            tex[box] = np.where(tumor, tex_box, 0.0)
        return code, tex

    def masks(self, xs, ys, zs, styles: dict, rho: float) -> tuple[np.ndarray, dict, np.ndarray]:
        """Voxel-center masks: liver, each reader's tumor, and the true tumor."""
        _, e_liver, box = self.regions(xs, ys, zs)
        liver = e_liver < 1.0
        true = np.zeros(liver.shape, np.uint8)
        readers = {r: np.zeros(liver.shape, np.uint8) for r in styles}
        bx, by, bz = xs[box[2]], ys[box[1]], zs[box[0]]
        if bx.size and by.size and bz.size:
            lev = self.level(bx, by, bz)
            lbox = liver[box]
            true[box] = _largest_component((lev > 0) & lbox)
            for reader, (shift, sd, base) in styles.items():
                field = np.clip(self.reader_field(reader, base, rho).sample(bx, by, bz), -2.5, 2.5)
                readers[reader][box] = _largest_component((lev + shift + sd * field > 0) & lbox)
        return liver.astype(np.uint8), readers, true


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component (readers draw one connected tumor)."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask.astype(np.uint8)
    sizes = np.bincount(lab.ravel())[1:]
    return (lab == 1 + int(np.argmax(sizes))).astype(np.uint8)


def _grid(spec: dict, center: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spacing, size and origin (x, y, z) of a center's grid over the field of view."""
    spacing = np.asarray(center["spacing"], float)
    size = np.maximum(np.round(float(spec["fov_mm"]) / spacing).astype(int), 4)
    shift = center.get("origin_shift")
    if shift is None:  # small per-center origin shift (mm), from the center's own seed
        shift = _rng(spec["seed"], center["name"], "origin").uniform(-1.0, 1.0, 3)
    origin = -0.5 * (size - 1) * spacing + np.asarray(shift, float)
    return spacing, size, origin


def _axis(n: int, spacing: float, origin: float, k: int = 1) -> np.ndarray:
    """World coordinates of voxel centers, or of k sub-samples per voxel (partial volume)."""
    offsets = (np.arange(k) + 0.5) / k - 0.5
    return (origin + spacing * np.arange(n)[:, None] + spacing * offsets[None, :]).ravel()


def _reader_styles(spec: dict) -> dict:
    """reader -> (shift mm, sd mm, base reader of a repeat reading or None)."""
    styles = {}
    for reader in spec["readers"]:
        stem = reader[:-1]
        known = stem in spec["readers"] or stem in spec["reader_styles"]
        base = stem if reader.endswith("r") and stem and known else None
        shift, sd = spec["reader_styles"].get(base or reader, _OTHER_READER)
        styles[reader] = (float(shift), float(sd), base)
    return styles


def _bias_field(rng: np.random.Generator, xs, ys, zs, fov: float, amp: float) -> np.ndarray:
    """Smooth multiplicative bias: random low-order (quadratic) polynomial, range ~1 +- amp."""
    zz, yy, xx = zs[:, None, None] / fov, ys[None, :, None] / fov, xs[None, None, :] / fov
    c = rng.normal(0, 1, 7)
    poly = c[0] * xx + c[1] * yy + c[2] * zz + c[3] * xx * yy + c[4] * xx**2 + c[5] * yy**2
    poly = poly + c[6] * zz**2
    return 1.0 + amp * poly / (np.abs(poly).max() + 1e-12)


def generate_case(center: dict, index: int, spec: dict) -> tuple[dict, dict]:
    """Render one case on its center's grid.

    Returns ``(data, truth)``: ``data`` holds ``images`` (seq -> array, z-y-x),
    ``masks`` (reader -> uint8), ``liver``, ``tumor`` (true mask) and the grid
    ``spacing``/``origin`` (x-y-z); ``truth`` holds the case's latent variables.
    """
    seed, name, fov = spec["seed"], center["name"], float(spec["fov_mm"])
    ct = spec["modality"] == "CT"
    t = _latent_case(_rng(seed, name, index, "latent"), fov)
    rngs = {"shape": _rng(seed, name, index, "shape"), "texture": _rng(seed, name, index, "tex")}
    rngs["reader"] = lambda r: _rng(seed, name, index, "reader", r)
    ph = _Phantom(t, fov, rngs)
    spacing, size, origin = _grid(spec, center)
    centers_xyz = [_axis(int(n), s, o) for n, s, o in zip(size, spacing, origin, strict=True)]
    # partial volume: render k = round(spacing / 1 mm) sub-samples per axis, average
    k = np.maximum(np.round(spacing).astype(int), 1)
    fine = [_axis(int(n), s, o, int(kk)) for n, s, o, kk in zip(size, spacing, origin, k, strict=True)]  # fmt: skip
    code, tex = ph.tissue(*fine)
    nx, ny, nz = (int(v) for v in size)
    kx, ky, kz = (int(v) for v in k)

    def block_mean(a: np.ndarray) -> np.ndarray:
        return a.reshape(nz, kz, ny, ky, nx, kx).mean(axis=(1, 3, 5))

    tumor_fine = (code >= 4).astype(np.float32)
    images = {}
    for seq in spec["sequences"]:
        key = "CT" if ct else seq
        lut = np.array([TISSUE[key][n] for n in _TISSUES], np.float32)
        sd_tex = _TEXTURE_SD[key] * (0.15 + 0.85 * t["heterogeneity"])
        img = block_mean(lut[code] + sd_tex * tex * tumor_fine)
        n_rng = _rng(seed, name, index, "scan", seq)
        sd = center["noise"] * _NOISE_REF[spec["modality"]]
        if ct:  # HU are calibrated: the center's gain/offset only, no per-scan jitter
            img = center["gain"] * img + center["offset"] + n_rng.normal(0, sd, img.shape)
            images[seq] = np.clip(np.round(img), -1024, 3071).astype(np.int16)
            continue
        gain = center["gain"] * (1.0 + n_rng.normal(0, 0.03))  # per-scan MR gain jitter
        img = img * _bias_field(n_rng, *centers_xyz, fov, center["bias"])
        # magnitude of complex Gaussian noise (Rician), then scanner gain/offset
        img = np.hypot(img + n_rng.normal(0, sd, img.shape), n_rng.normal(0, sd, img.shape))
        images[seq] = (gain * img + center["offset"]).astype(np.float32)
    liver, readers, true = ph.masks(*centers_xyz, _reader_styles(spec), spec["repeat_correlation"])
    vox_ml = float(np.prod(spacing)) / 1000.0
    truth = {
        "true_volume_ml": float(true.sum()) * vox_ml,
        "nominal_volume_ml": t["nominal_volume_ml"],
        "radius_mm": t["radius"],
        "heterogeneity": t["heterogeneity"],
        "irregularity": t["irregularity"],
        "septations": t["septations"],
        "necrosis_fraction": float(block_mean((code == 5).astype(np.float32)).sum())
        / max(float(block_mean(tumor_fine).sum()), 1e-9),
        "risk": t["risk"],
        "age": t["age"],
        "sex": t["sex"],
        "afp": t["afp"],
        "pretext": t["pretext"],
    }
    data = {
        "images": images,
        "masks": readers,
        "liver": liver,
        "tumor": true,
        "spacing": spacing,
        "origin": origin,
    }
    return data, truth


def _outcomes(truth: dict, seed: int, center: str, index: int) -> dict:
    """Label, event-free survival and radiological descriptors of one case."""
    rng = _rng(seed, center, index, "outcome")
    risk = truth["risk"]
    # Weibull event time with hazard proportional to exp(risk) (inverse transform)
    t_event = _WEIBULL_SCALE * (-np.log(rng.uniform()) / np.exp(risk)) ** (1 / _WEIBULL_SHAPE)
    t_cens = rng.uniform(6.0, _CENSOR_MAX)
    d_rng = _rng(seed, center, index, "descriptors")
    sept = truth["septations"] if d_rng.uniform() > 0.1 else 1 - truth["septations"]
    return {
        "label": int(risk > _LABEL_THRESHOLD),
        "efs_time": round(float(min(t_event, t_cens)), 2),
        "efs_event": int(t_event <= t_cens),
        "desc_border": int(
            np.clip(np.round(3 * truth["irregularity"] + d_rng.normal(0, 0.4)), 0, 3)
        ),  # fmt: skip
        "desc_heterogeneity": int(
            np.clip(np.round(3 * truth["heterogeneity"] + d_rng.normal(0, 0.4)), 0, 3)
        ),
        "desc_septations": int(sept),
    }


def _blank_missing(row: dict, seed: int, center: str, index: int, fraction: float) -> dict:
    """Leave AFP or PRETEXT empty in a seeded share of cases (a real sheet has gaps)."""
    rng = _rng(seed, center, index, "missing")
    if rng.uniform() < fraction:
        row = {**row, str(rng.choice(["afp", "pretext"])): None}
    return row


def _splits(labels: np.ndarray, center: dict, spec: dict) -> list[str]:
    """Seeded, label-stratified train/test split within one training center."""
    if center["role"] == "external":
        return ["external"] * len(labels)
    rng = _rng(spec["seed"], center["name"], "split")
    split = np.array(["train"] * len(labels), dtype=object)
    for lab in (0, 1):
        idx = np.flatnonzero(labels == lab)
        n_test = int(round(float(spec["test_fraction"]) * len(idx)))
        split[rng.permutation(idx)[:n_test]] = "test"
    return [str(s) for s in split]


def merge_spec(spec: dict | None) -> dict:
    """``spec`` over DEFAULTS (top-level keys), checked; CT defaults to one sequence."""
    spec = spec or {}
    out = copy.deepcopy(DEFAULTS)
    for key, value in spec.items():
        if key not in DEFAULTS:
            raise ConfigError(f"synthetic.spec: unknown key {key!r} (known: {sorted(DEFAULTS)})")
        out[key] = copy.deepcopy(value)
    if "reader_styles" in spec:
        out["reader_styles"] = {**DEFAULTS["reader_styles"], **spec["reader_styles"]}
    if out["modality"] not in ("MRI", "CT"):
        raise ConfigError(f"synthetic.spec.modality: {out['modality']!r} is not MRI or CT")
    if out["modality"] == "CT" and "sequences" not in spec:
        out["sequences"] = ["CT"]
    if out["modality"] == "MRI":
        bad = [s for s in out["sequences"] if s not in ("T1", "T2")]
        if bad:
            raise ConfigError(f"synthetic.spec.sequences: {bad} not simulated (T1, T2)")
    if not 0.0 <= float(out["test_fraction"]) < 1.0:
        raise ConfigError("synthetic.spec.test_fraction: must be in [0, 1)")
    if not 0.0 <= float(out["missing_fraction"]) <= 1.0:
        raise ConfigError("synthetic.spec.missing_fraction: must be in [0, 1]")
    names = [c.get("name") for c in out["centers"]]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"synthetic.spec.centers: names must be unique and set, got {names}")
    for c in out["centers"]:
        for key in ("n", "role", "spacing", "gain", "offset", "noise", "bias"):
            if key not in c:
                raise ConfigError(f"synthetic.spec.centers[{c['name']}]: missing key {key!r}")
        if c["role"] not in ("train", "external"):
            raise ConfigError(f"synthetic.spec.centers[{c['name']}]: role must be train/external")
        if len(c["spacing"]) != 3 or min(c["spacing"]) <= 0 or int(c["n"]) < 1:
            raise ConfigError(f"synthetic.spec.centers[{c['name']}]: bad spacing or n")
    return out


def _write(arr: np.ndarray, spacing, origin, path: Path) -> None:
    """NIfTI (gzip) with geometry; SimpleITK's NIfTI writer stores no timestamp."""
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def _tsv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, float_format="%.6g", lineterminator="\n")


SHEET_CLINICAL = [
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
]


def generate_cohort(out_dir: str | Path, spec: dict | None = None) -> Path:
    """Write the synthetic cohort into ``out_dir`` and return the sheet path.

    Layout: ``cases.tsv`` (paths relative to it), ``images/{case}_{seq}.nii.gz``,
    ``masks/{case}_{reader}.nii.gz``, ``masks/{case}_liver.nii.gz``,
    ``truth/{case}/mask_true.nii.gz``, ``truth/cases_truth.tsv``,
    ``truth/centers.tsv``. ``spec`` is merged over ``DEFAULTS``.
    """
    spec = merge_spec(spec)
    out = Path(out_dir)
    rows, center_rows = [], []
    for center in spec["centers"]:
        name = center["name"]
        spacing, size, origin = _grid(spec, center)
        center_rows.append(
            {
                "center": name,
                "role": center["role"],
                "n": int(center["n"]),
                "field_strength": center.get("field_strength", 0.0),
                "spacing_x": spacing[0],
                "spacing_y": spacing[1],
                "spacing_z": spacing[2],
                "size_x": int(size[0]),
                "size_y": int(size[1]),
                "size_z": int(size[2]),
                "origin_x": origin[0],
                "origin_y": origin[1],
                "origin_z": origin[2],
                "gain": center["gain"],
                "offset": center["offset"],
                "noise": center["noise"],
                "bias": 0.0 if spec["modality"] == "CT" else center["bias"],
            }
        )
        crows = []
        for i in range(int(center["n"])):
            case = f"{name}{i + 1:03d}"
            data, truth = generate_case(center, i, spec)
            geo = (data["spacing"], data["origin"])
            for seq, arr in data["images"].items():
                _write(arr, *geo, out / "images" / f"{case}_{seq}.nii.gz")
            for reader, arr in data["masks"].items():
                _write(arr, *geo, out / "masks" / f"{case}_{reader}.nii.gz")
            _write(data["liver"], *geo, out / "masks" / f"{case}_liver.nii.gz")
            _write(data["tumor"], *geo, out / "truth" / case / "mask_true.nii.gz")
            row = {
                "case_id": case,
                "center": name,
                **truth,
                **_outcomes(truth, spec["seed"], name, i),
                "field_strength": center.get("field_strength", 0.0),
            }
            crows.append(_blank_missing(row, spec["seed"], name, i, spec["missing_fraction"]))
        cdf = pd.DataFrame(crows).astype({"pretext": "Int64"})
        cdf.insert(2, "split", _splits(cdf["label"].to_numpy(), center, spec))
        rows.append(cdf)
    df = pd.concat(rows, ignore_index=True).sort_values("case_id", kind="stable")
    sheet = df[["case_id", "center", "split"]].copy()
    for seq in spec["sequences"]:
        sheet[f"image_{seq}"] = [f"images/{c}_{seq}.nii.gz" for c in df["case_id"]]
    for reader in spec["readers"]:
        sheet[f"mask_{reader}"] = [f"masks/{c}_{reader}.nii.gz" for c in df["case_id"]]
    sheet["organ_mask"] = [f"masks/{c}_liver.nii.gz" for c in df["case_id"]]
    for col in SHEET_CLINICAL:
        sheet[col] = df[col].to_numpy()
    sheet_path = out / "cases.tsv"
    _tsv(sheet, sheet_path)
    truth_cols = [
        "case_id",
        "center",
        "split",
        "true_volume_ml",
        "nominal_volume_ml",
        "radius_mm",
        "heterogeneity",
        "irregularity",
        "septations",
        "necrosis_fraction",
        "risk",
        "label",
        "efs_time",
        "efs_event",
    ]
    _tsv(df[truth_cols], out / "truth" / "cases_truth.tsv")
    _tsv(pd.DataFrame(center_rows).sort_values("center"), out / "truth" / "centers.tsv")
    return sheet_path


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m radstudy.synth --out DIR [--n-cases N] [--seed S]``."""
    ap = argparse.ArgumentParser(description="Write the synthetic radstudy cohort.")
    ap.add_argument("--out", required=True, help="output folder (cases.tsv + images)")
    ap.add_argument("--n-cases", type=int, help="scale the default centers to about N cases")
    ap.add_argument("--seed", type=int, help=f"seed (default {DEFAULTS['seed']})")
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


def feature_table(
    n: int = 120,
    p: int = 60,
    centers: tuple[str, ...] = ("A", "B", "C"),
    prevalence: tuple[float, ...] = (0.2, 0.6, 0.4),
    seed: int = 0,
    gap_fraction: float = 0.05,
) -> pd.DataFrame:
    """A messy multi-center feature table as hospitals and papers publish them.

    Columns: ``PatientID`` (integers as text: natural order matters), ``site``,
    ``cohort`` (train for every center but the last, external there), ``outcome``
    (yes/no, prevalence per center), ``sex`` (0/1; constant within the first
    center), ``fold`` (a published 4-fold split), ``record_no`` (an id number: not a
    feature), ``nomogram_score`` (a published model's score: leaks the outcome), and
    ``p`` features ``f000...``: ``f000``-``f004`` carry the signal; ``f005`` is 0 in
    80 % of the cases (heavily tied); ``f006`` is constant within the first center;
    ``f007`` is missing in half of the cases; ``gap_fraction`` of the other values
    are missing. Center effects: a shift and a gain per center on every feature.
    """
    rng = np.random.default_rng(seed)
    per = [n // len(centers) + (i < n % len(centers)) for i in range(len(centers))]
    site = np.repeat(list(centers), per)
    y = np.concatenate(
        [rng.random(k) < prev for k, prev in zip(per, prevalence, strict=True)]
    ).astype(int)
    F = rng.normal(size=(n, p))
    F[:, :5] += 1.0 * (y[:, None] - 0.5)
    for i, c in enumerate(centers):
        rows = site == c
        F[rows] = F[rows] * (1.0 + 0.3 * i) + 0.8 * i
    F[:, 5] = np.where(rng.random(n) < 0.8, 0.0, np.abs(F[:, 5]) + 1)
    F[site == centers[0], 6] = 2.5
    gaps = rng.random((n, p)) < gap_fraction
    gaps[:, 7] = rng.random(n) < 0.5
    F[gaps] = np.nan
    table = pd.DataFrame(F, columns=[f"f{j:03d}" for j in range(p)])
    sex = rng.integers(0, 2, n)
    sex[site == centers[0]] = 1
    table.insert(0, "PatientID", [str(i + 1) for i in range(n)])
    table.insert(1, "site", site)
    table.insert(2, "cohort", np.where(site == centers[-1], "external", "train"))
    table.insert(3, "outcome", np.where(y == 1, "yes", "no"))
    table.insert(4, "sex", sex)
    table.insert(5, "fold", rng.integers(1, 5, n))
    table.insert(6, "record_no", 5000 + np.arange(n))
    table.insert(7, "nomogram_score", y + 0.1 * rng.normal(size=n))
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
