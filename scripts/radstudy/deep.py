"""Deep features: MONAI ResNet (18/34/50) on the tumor ROI, penultimate-layer activations.

Input: the tumor bounding box plus a margin, sampled in physical space (mm) on a
fixed grid: a cube of ``crop_size`` voxels per side (3D), or the ``n_slices``
largest axial tumor slices on a ``crop_size`` square (2D; their features are
averaged). Intensities are the pipeline's normalised ones (z-score in the ROI or
Nyul) divided by ``intensity_scale``.

Weights (``weights``):

- ``random``: seeded initialisation (smoke tests and CI only),
- a checkpoint path (a state_dict, e.g. MedicalNet or ImageNet weights), loaded
  with ``strict=False``; missing, unexpected and shape-mismatched keys are logged,
- ``train``: supervised on the binary endpoint with cross-entropy, TRAINING cases
  only (:func:`fit_deep_model`), or ``selfsup``: rotation prediction (no labels).

Runs on the CPU deterministically (seeded, deterministic algorithms, fixed
threads); uses a GPU when one is present and ``device`` allows it, never needs one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radstudy.casestep import marker_reason
from radstudy.errors import CaseError, ConfigError
from radstudy.imageio import read_image

log = logging.getLogger(__name__)

DEFAULTS = {
    "arch": "resnet18",  # resnet18 | resnet34 | resnet50
    "weights": "random",  # random | train | selfsup | path to a state_dict (.pt)
    "spatial_dims": 3,  # 3: ROI cube; 2: largest axial tumor slices
    "crop_size": 32,  # voxels per side of the crop (int, or one per axis)
    "margin_mm": 4.0,  # margin around the tumor bounding box
    "n_slices": 3,  # 2D: features averaged over the k largest tumor slices
    "intensity_scale": 100.0,  # divide normalised intensities by this (preprocess.scale)
    "net": {"conv1_t_stride": 2},  # extra monai.networks.nets.ResNet arguments
    "init_weights": "",  # train/selfsup: start from this state_dict ("" = seeded random)
    "device": "auto",  # auto (GPU when present) | cpu | cuda
    "threads": 1,  # torch CPU threads
    "epochs": 5,  # train/selfsup
    "batch_size": 4,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "augment": True,  # seeded flips, 90-degree rotations, intensity scale/shift
}
FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
TRAINED_MODES = ("train", "selfsup")


def merged(cfg: dict | None) -> dict:
    """The user's deep section over :data:`DEFAULTS` (``net`` merged key by key), checked."""
    cfg = dict(cfg or {})
    out = {**DEFAULTS, **cfg, "net": {**DEFAULTS["net"], **(cfg.get("net") or {})}}
    if out["arch"] not in FEATURE_DIMS:
        raise ConfigError(f"deep.arch must be one of {sorted(FEATURE_DIMS)}, not {out['arch']!r}")
    if int(out["spatial_dims"]) not in (2, 3):
        raise ConfigError(f"deep.spatial_dims must be 2 or 3, not {out['spatial_dims']!r}")
    if out["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"deep.device must be auto, cpu or cuda, not {out['device']!r}")
    if int(out["n_slices"]) < 1:
        raise ConfigError(f"deep.n_slices must be >= 1, not {out['n_slices']!r}")
    _grid(out["crop_size"], int(out["spatial_dims"]))
    return out


def _grid(size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """Crop size per axis (array order), at least 8 voxels each."""
    sizes = (int(size),) * spatial_dims if np.isscalar(size) else tuple(int(s) for s in size)
    if len(sizes) != spatial_dims or min(sizes) < 8:
        raise ConfigError(f"deep.crop_size must be >= 8 per axis for {spatial_dims}D: {size!r}")
    return sizes


def feature_names(seq: str, arch: str, n: int) -> list[str]:
    """Column names ``{seq}__deep_{arch}_{i:03d}`` (docs/CONTRACTS.md)."""
    return [f"{seq}__deep_{arch}_{i:03d}" for i in range(n)]


# --------------------------------------------------------------------------- torch set-up


def select_device(cfg: dict) -> str:
    """``cuda`` when a GPU is present and ``device`` is auto or cuda, else ``cpu``."""
    import torch

    want = cfg.get("device", "auto")
    if want == "cuda" and not torch.cuda.is_available():
        log.warning("deep.device is cuda but no GPU is visible: running on the CPU")
    return "cuda" if want in ("auto", "cuda") and torch.cuda.is_available() else "cpu"


def _setup_torch(cfg: dict, seed: int):
    """Seed torch, fix CPU threads, switch on deterministic algorithms; return (torch, device)."""
    device = select_device(cfg)
    if device == "cuda":  # cuBLAS needs this before its first use to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.manual_seed(int(seed))  # seeds the CPU and every CUDA device
    torch.set_num_threads(max(1, int(cfg.get("threads", 1))))
    # Every CPU kernel used here is deterministic; on CUDA a few backward kernels
    # (adaptive average pooling) have no deterministic version: warn, do not fail.
    torch.use_deterministic_algorithms(True, warn_only=device == "cuda")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # Full float32 on GPUs (no TF32): features then match the CPU's to ~1e-5, not ~1e-3.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch, device


def build_resnet(
    arch: str = "resnet18",
    spatial_dims: int = 3,
    in_channels: int = 1,
    n_classes: int = 2,
    seed: int = 0,
    head: bool = True,
    **net_kwargs,
):
    """A seeded MONAI ResNet (``monai.networks.nets.resnet18/34/50``).

    With ``head=False`` the classification layer is left out (MONAI's
    ``feed_forward=False``): the network is a feature extractor whose forward
    returns the penultimate, global-average-pooled activations (512 for
    resnet18/34, 2048 for resnet50). ``net_kwargs`` go to MONAI's ResNet (e.g.
    ``conv1_t_stride``, ``shortcut_type="A"`` and ``bias_downsample`` for MedicalNet).
    """
    import torch
    from monai.networks import nets

    if arch not in FEATURE_DIMS:
        raise ConfigError(f"deep.arch must be one of {sorted(FEATURE_DIMS)}, not {arch!r}")
    torch.manual_seed(int(seed))
    return getattr(nets, arch)(
        spatial_dims=int(spatial_dims),
        n_input_channels=int(in_channels),
        num_classes=int(n_classes),
        feed_forward=bool(head),
        **net_kwargs,
    )


def _state_dict_of(obj) -> dict:
    """The tensor dict inside a checkpoint: plain, or under state_dict/model/net; no ``module.``."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "net"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        return {}
    return {str(k).removeprefix("module."): v for k, v in obj.items() if hasattr(v, "shape")}


def load_weights(net, checkpoint: str | Path) -> dict:
    """Load a state_dict file into ``net`` with ``strict=False``; report what matched.

    Keys are accepted plain, under ``state_dict``/``model``, and with a ``module.``
    prefix (DataParallel, MedicalNet). Keys whose shape differs are skipped, except
    a 3-channel (RGB, ImageNet) first convolution on a 1-channel network, whose
    filters are summed over the colour channels. Raises ConfigError when the file
    is missing or unreadable or when no parameter matches.
    """
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"deep weights: checkpoint {path} does not exist")
    try:
        state = _state_dict_of(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - any unreadable file is a config problem
        raise ConfigError(f"deep weights: cannot read checkpoint {path} ({err})") from err
    own = net.state_dict()
    usable, skipped = {}, []
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            target = own[key].shape
            if key == "conv1.weight" and value.ndim == len(target) and value.shape[1] == 3:
                if target[1] == 1 and value.shape[0] == target[0] and value.shape[2:] == target[2:]:
                    usable[key] = value.sum(1, keepdim=True)
                    continue
            skipped.append(key)
        else:
            usable[key] = value
    result = net.load_state_dict(usable, strict=False)
    loaded = sorted(k for k in usable if k in own)
    report = {
        "checkpoint": str(path),
        "loaded": len(loaded),
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(result.unexpected_keys),
        "shape_mismatch": sorted(skipped),
    }
    log.info(
        "checkpoint %s: %d tensors loaded, %d missing %s, %d unexpected %s, %d shape mismatch %s",
        path,
        len(loaded),
        len(report["missing"]),
        report["missing"][:8],
        len(report["unexpected"]),
        report["unexpected"][:8],
        len(skipped),
        skipped[:8],
    )
    if not loaded:
        raise ConfigError(
            f"deep weights: no parameter of {path} matches the network "
            "(check deep.arch, deep.spatial_dims and deep.net)"
        )
    return report


def resolve_weights(cfg: dict, checkpoint: str | None) -> str | None:
    """The checkpoint path to load, or None for the seeded random initialisation.

    An explicit ``checkpoint`` wins over ``cfg["weights"]``. The modes ``train`` and
    ``selfsup`` are not files: the workflow must pass the path that
    :func:`fit_deep_model` wrote.
    """
    choice = checkpoint if checkpoint not in (None, "") else cfg.get("weights", "random")
    choice = str(choice)
    if choice == "random":
        return None
    if choice in TRAINED_MODES:
        raise ConfigError(
            f"deep.weights is {choice!r} but no trained checkpoint was given: "
            "pass the state_dict written by fit_deep_model (results/models/deep/{seq}.pt)"
        )
    return choice


def load_network(cfg: dict, checkpoint: str | None, seed: int, head: bool = False):
    """The configured ResNet (seeded, weights loaded) on its device, in eval mode.

    Returns ``(net, torch, device)``. ``head=False`` gives the feature extractor.
    """
    cfg = merged(cfg)
    torch, device = _setup_torch(cfg, seed)
    net = build_resnet(cfg["arch"], int(cfg["spatial_dims"]), 1, 2, seed, head=head, **cfg["net"])
    path = resolve_weights(cfg, checkpoint)
    if path is None:
        log.warning("deep weights: seeded random initialisation (smoke tests only)")
    else:
        load_weights(net, path)
    return net.to(device).eval(), torch, device


# --------------------------------------------------------------------------- input crops


def _sample(
    image: sitk.Image,
    center_zyx: np.ndarray,
    side_mm: float,
    shape_zyx: tuple[int, ...],
    fill: float,
) -> np.ndarray:
    """Sample ``image`` on a grid of ``shape_zyx`` voxels centred on a continuous index.

    In-plane (and in z when the grid has more than one slice) the grid spans
    ``side_mm``, so voxels are isotropic and the tumor keeps its shape whatever the
    input spacing; a one-slice grid lies exactly on the slice at ``center_zyx[0]``.
    The image is Gaussian-smoothed first where the grid is coarser than the image
    (anti-aliasing, as skimage.transform.resize does), then linearly interpolated.
    """
    in_sp = np.asarray(image.GetSpacing(), dtype=float)  # x, y, z
    size_xyz = [int(s) for s in shape_zyx[::-1]]
    out_sp = np.array([side_mm / s for s in size_xyz])
    if size_xyz[2] == 1:
        out_sp[2] = in_sp[2]
    # Only the neighbourhood of the grid is smoothed and resampled (cheap on large images).
    sigma_mm = np.maximum(out_sp / in_sp - 1.0, 0.0) / 2.0 * in_sp
    reach = side_mm / 2.0 + 4.0 * sigma_mm.max() + 2.0 * in_sp.max()
    c_xyz = np.asarray(center_zyx, dtype=float)[::-1]
    lo = np.clip(np.floor(c_xyz - reach / in_sp), 0, np.asarray(image.GetSize()) - 1).astype(int)
    hi = np.clip(np.ceil(c_xyz + reach / in_sp) + 1, lo + 1, image.GetSize()).astype(int)
    center_phys = np.asarray(image.TransformContinuousIndexToPhysicalPoint(c_xyz.tolist()))
    region = image[int(lo[0]) : int(hi[0]), int(lo[1]) : int(hi[1]), int(lo[2]) : int(hi[2])]
    region = sitk.Cast(region, sitk.sitkFloat32)
    if sigma_mm.max() > 0:
        region = sitk.DiscreteGaussian(region, (sigma_mm**2).tolist(), 32, 0.01, True)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = center_phys - direction @ ((np.asarray(size_xyz) - 1) / 2.0 * out_sp)
    out = sitk.Resample(
        region,
        size_xyz,
        sitk.Transform(),
        sitk.sitkLinear,
        origin.tolist(),
        out_sp.tolist(),
        direction.ravel().tolist(),
        float(fill),
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(out)


def roi_crop(
    image: sitk.Image,
    mask: sitk.Image,
    size: int | Sequence[int] = 32,
    margin_mm: float = 4.0,
    spatial_dims: int = 3,
    n_slices: int = 1,
) -> np.ndarray:
    """The tumor ROI on a fixed grid, intensities unchanged (float32, array order z, y, x).

    - 3D: a cube centred on the tumor bounding box whose side is the box's longest
      extent (mm) plus ``margin_mm`` on each side, sampled on ``size`` voxels per
      axis -> shape ``(S, S, S)``.
    - 2D: the ``n_slices`` axial slices with the largest tumor area (fewer when the
      tumor spans fewer slices; returned in slice order), each sampled on a square
      centred on the tumor's in-plane box -> shape ``(k, S, S)``.

    Voxels outside the image take the image's minimum (background). Raises
    ValueError when the mask is empty or not on the image's grid.
    """
    img_size, msk_size = image.GetSize(), mask.GetSize()
    if img_size != msk_size:
        raise ValueError(f"mask grid {msk_size} differs from image grid {img_size}")
    if not np.allclose(image.GetSpacing(), mask.GetSpacing(), rtol=1e-3) or not np.allclose(
        image.GetOrigin(), mask.GetOrigin(), atol=1e-2 * min(image.GetSpacing())
    ):
        raise ValueError("mask spacing/origin differ from the image (resample the mask)")
    m = sitk.GetArrayViewFromImage(mask) > 0  # z, y, x
    if not m.any():
        raise ValueError("mask is empty (no labelled voxel)")
    spatial_dims = int(spatial_dims)
    grid = _grid(size, spatial_dims)
    fill = float(sitk.GetArrayViewFromImage(image).min())
    sp_zyx = np.asarray(image.GetSpacing(), dtype=float)[::-1]
    idx = np.argwhere(m)
    lo, hi = idx.min(0), idx.max(0)
    center = (lo + hi) / 2.0
    extent_mm = (hi - lo + 1) * sp_zyx
    if spatial_dims == 3:
        side = float(extent_mm.max()) + 2.0 * float(margin_mm)
        return _sample(image, center, side, grid, fill)
    area = m.reshape(m.shape[0], -1).sum(1)
    order = np.argsort(-area, kind="stable")[: int(n_slices)]
    slices = sorted(int(z) for z in order if area[z] > 0)
    side = float(extent_mm[1:].max()) + 2.0 * float(margin_mm)
    return np.stack(
        [
            _sample(image, np.array([z, center[1], center[2]]), side, (1, *grid), fill)[0]
            for z in slices
        ]
    )


def prepare_input(case: str, image_path, mask_path, cfg: dict) -> np.ndarray:
    """Read one case's image and mask and return its crop(s) divided by ``intensity_scale``.

    Problems with the case's files raise :class:`CaseError` naming the file.
    """
    cfg = merged(cfg)
    image = read_image(image_path, case)
    mask = read_image(mask_path, case)
    try:
        crop = roi_crop(
            image,
            mask,
            cfg["crop_size"],
            float(cfg["margin_mm"]),
            int(cfg["spatial_dims"]),
            int(cfg["n_slices"]),
        )
    except ValueError as err:
        raise CaseError(case, mask_path, str(err)) from err
    if not np.isfinite(crop).all():
        raise CaseError(case, image_path, "ROI crop holds NaN/inf intensities")
    return (crop / float(cfg["intensity_scale"])).astype(np.float32)


def _batch(crop: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Network input (N, 1, ...): one 3D crop, or the k 2D slices of one case."""
    return crop[None, None] if spatial_dims == 3 else crop[:, None]


# --------------------------------------------------------------------------- extraction


def _case_row(net, torch, device, case, seq, image_path, mask_path, cfg) -> pd.DataFrame:
    """One case's penultimate-layer features with a loaded network: a one-row table."""
    crop = prepare_input(case, image_path, mask_path, cfg)
    with torch.inference_mode():
        x = torch.from_numpy(_batch(crop, int(cfg["spatial_dims"]))).to(device)
        feats = net(x).double().mean(0).cpu().numpy()
    if not np.isfinite(feats).all():
        raise CaseError(case, image_path, "deep features are not finite (check intensities)")
    return pd.DataFrame(
        [feats],
        columns=feature_names(seq, cfg["arch"], feats.size),
        index=pd.Index([str(case)], name="case_id"),
        dtype="float64",
    )


def extract_deep_case(
    case: str,
    seq: str,
    image_path,
    mask_path,
    checkpoint: str | None,
    out_parquet,
    cfg: dict,
    seed: int,
) -> pd.DataFrame:
    """Penultimate-layer ResNet features of one case x sequence, written to ``out_parquet``.

    One row indexed by ``case_id`` with float64 columns ``{seq}__deep_{arch}_{i:03d}``
    (2D: the mean over the k largest tumor slices). ``checkpoint`` is a state_dict
    path, ``"random"``, or None to use ``cfg["weights"]``. Bit-identical across runs
    on the CPU; runs on the GPU when present and ``cfg["device"]`` allows it.
    """
    cfg = merged(cfg)
    start = time.perf_counter()
    weights = resolve_weights(cfg, checkpoint) or "random"  # config errors before case errors
    net, torch, device = load_network(cfg, weights, seed, head=False)
    row = _case_row(net, torch, device, case, seq, image_path, mask_path, cfg)
    Path(out_parquet).parent.mkdir(parents=True, exist_ok=True)
    row.to_parquet(out_parquet)
    log.info(
        "case %s %s: %d %s features (%dD, %s) in %.2f s",
        case,
        seq,
        row.shape[1],
        cfg["arch"],
        int(cfg["spatial_dims"]),
        device,
        time.perf_counter() - start,
    )
    return row


def extract_deep_center(
    cases: list,
    seq: str,
    checkpoint: str | None,
    out_parquet,
    out_excluded,
    cfg: dict,
    seed: int,
) -> pd.DataFrame:
    """Deep features of one center x sequence: ``cases`` = [(case, image, mask)].

    The network is loaded once per center (torch start-up costs seconds; a case's
    forward pass a fraction of that), each case runs exactly as
    :func:`extract_deep_case`. A case whose inputs are exclusion markers, or that
    fails (:class:`CaseError`), is listed in ``out_excluded`` (case_id, reason) and
    the others go on. ``out_parquet``: one row per case, sorted by case_id.
    """
    from radstudy.casestep import marker_reason

    cfg = merged(cfg)
    start = time.perf_counter()
    weights = resolve_weights(cfg, checkpoint) or "random"  # config errors first
    net, torch, device = load_network(cfg, weights, seed, head=False)
    rows, excluded = [], []
    for case, image_path, mask_path in sorted(cases, key=lambda c: str(c[0])):
        reason = marker_reason(image_path) or marker_reason(mask_path)
        if reason is not None:
            excluded.append({"case_id": str(case), "reason": reason})
            continue
        try:
            rows.append(_case_row(net, torch, device, case, seq, image_path, mask_path, cfg))
        except CaseError as err:
            log.warning("%s", err)
            excluded.append({"case_id": str(case), "reason": f"deep features: {err}"})
    table = pd.concat(rows) if rows else pd.DataFrame(index=pd.Index([], name="case_id"))
    Path(out_parquet).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_parquet)
    excl = pd.DataFrame(excluded, columns=["case_id", "reason"])
    excl.to_csv(out_excluded, sep="\t", index=False, lineterminator="\n")
    log.info(
        "%s: deep features of %d cases (%d excluded), %s %dD on %s, %.1f s",
        seq,
        len(rows),
        len(excluded),
        cfg["arch"],
        int(cfg["spatial_dims"]),
        device,
        time.perf_counter() - start,
    )
    return table


# --------------------------------------------------------------------------- training


def _augmenter(cfg: dict, seed: int, rotate: bool):
    """Seeded MONAI augmentations on one channel-first crop."""
    import monai.transforms as mt

    axes = range(int(cfg["spatial_dims"]))
    steps = [mt.RandFlip(prob=0.5, spatial_axis=a) for a in axes]
    if rotate:
        steps.append(mt.RandRotate90(prob=0.5, max_k=3, spatial_axes=(-2, -1)))
    steps += [
        mt.RandScaleIntensity(factors=0.1, prob=0.5),
        mt.RandShiftIntensity(offsets=0.1, prob=0.5),
    ]
    return mt.Compose(steps).set_random_state(seed=int(seed))


def _augmented(augment, x: np.ndarray) -> np.ndarray:
    """One augmented copy of ``x``.

    MONAI returns a MetaTensor: copied into a plain float32 array.
    """
    import torch

    out = augment(x)
    return torch.as_tensor(out).detach().cpu().numpy().astype(np.float32, copy=True)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Mini-batches of ``order``; a last batch of one joins the previous one (BatchNorm)."""
    out = [order[i : i + batch_size] for i in range(0, len(order), max(1, batch_size))]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = np.concatenate([out[-2], out.pop()])
    return out


def train_resnet(
    crops: Sequence[np.ndarray | str | Path],
    labels: Sequence[int] | None,
    cfg: dict,
    seed: int,
    out_checkpoint,
) -> dict:
    """Train the configured ResNet on training crops and save its state_dict.

    ``crops``: one array (or ``.npy`` path) per case, as :func:`prepare_input`
    returns: ``(S, S, S)`` in 3D, ``(k, S, S)`` in 2D (each slice one sample with
    its case's label). ``cfg["weights"] == "selfsup"`` trains rotation prediction
    (0/90/180/270 degrees in the axial plane, labels unused); otherwise
    supervised cross-entropy on 0/1 ``labels`` with balanced class weights. Adam-W,
    seeded shuffling and augmentations; deterministic on the CPU.

    Returns the training log: objective, sample/class counts, loss and accuracy per
    epoch, and the checkpoint report when ``init_weights`` was given.
    """
    cfg = merged(cfg)
    dims = int(cfg["spatial_dims"])
    objective = "selfsup" if cfg["weights"] == "selfsup" else "supervised"
    arrays = [np.load(c) if isinstance(c, (str, Path)) else np.asarray(c) for c in crops]
    arrays = [a.astype(np.float32) for a in arrays]
    per_case = [1 if dims == 3 else a.shape[0] for a in arrays]
    X = np.concatenate([_batch(a, dims) for a in arrays])
    if objective == "supervised":
        y_case = np.asarray(labels, dtype=np.int64)
        if y_case.size != len(arrays) or not set(np.unique(y_case)) == {0, 1}:
            raise ValueError(
                f"supervised deep training needs one 0/1 label per case with both classes; "
                f"got {np.unique(y_case).tolist()} for {len(arrays)} cases"
            )
        y = np.repeat(y_case, per_case)
        counts = np.bincount(y, minlength=2)
        class_weight = counts.sum() / (2.0 * counts)  # sklearn's "balanced"
    else:
        y, class_weight = None, None
    if len(X) < 2:
        raise ValueError("deep training needs at least two samples")
    torch, device = _setup_torch(cfg, seed)
    n_classes = 4 if objective == "selfsup" else 2
    net = build_resnet(cfg["arch"], dims, 1, n_classes, seed, head=True, **cfg["net"])
    info: dict = {}
    if cfg["init_weights"]:
        info["init_weights"] = load_weights(net, cfg["init_weights"])
    net = net.to(device)
    if device == "cuda":
        log.warning(
            "deep training on the GPU: some CUDA backward kernels (max/average pooling) are "
            "not deterministic, so the checkpoint is not bit-reproducible (device: cpu is)"
        )
    opt = torch.optim.AdamW(
        net.parameters(), lr=float(cfg["learning_rate"]), weight_decay=float(cfg["weight_decay"])
    )
    weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device))
    augment = _augmenter(cfg, seed, rotate=objective == "supervised") if cfg["augment"] else None
    rng = np.random.default_rng(int(seed))
    history = []
    for epoch in range(int(cfg["epochs"])):
        net.train()
        total, correct = 0.0, 0
        for b in _batches(rng.permutation(len(X)), int(cfg["batch_size"])):
            # "is not None", never "if augment": len()/bool() of a MONAI Compose builds a
            # flattened Compose that re-seeds the shared transforms from a global seed.
            xb = X[b] if augment is None else np.stack([_augmented(augment, X[i]) for i in b])
            if objective == "selfsup":
                k = rng.integers(0, 4, len(b))
                xb = np.stack(
                    [np.rot90(x, int(r), axes=(-2, -1)) for x, r in zip(xb, k, strict=True)]
                )
                target = torch.from_numpy(k.astype(np.int64))
            else:
                target = torch.from_numpy(y[b])
            xt = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
            target = target.to(device)
            logits = net(xt)
            loss = loss_fn(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
            correct += int((logits.argmax(1) == target).sum())
        history.append(
            {
                "epoch": epoch,
                "loss": round(total / len(X), 6),
                "accuracy": round(correct / len(X), 6),
            }
        )
        log.info(
            "deep %s epoch %d: loss %.4f, accuracy %.3f",
            objective,
            epoch,
            *list(history[-1].values())[1:],
        )
    Path(out_checkpoint).parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, out_checkpoint)
    info.update(
        {
            "objective": objective,
            "arch": cfg["arch"],
            "spatial_dims": dims,
            "device": device,
            "n_samples": len(X),
            "class_counts": None if y is None else np.bincount(y, minlength=2).tolist(),
            "history": history,
        }
    )
    return info


def fit_deep_model(
    train_cases: Sequence[tuple[str, str | Path, str | Path, int]],
    out_checkpoint,
    cfg: dict,
    seed: int,
) -> dict:
    """Train the ResNet on TRAINING cases only and save its state_dict to ``out_checkpoint``.

    ``train_cases``: (case, image_path, mask_path, label) for the training cases;
    nothing else is read. A case whose files cannot be used is skipped with its
    reason (kept in the returned log); the objective follows ``cfg["weights"]``
    (``selfsup``: rotation prediction, labels unused; else supervised).
    Returns the training log of :func:`train_resnet` plus the cases used and skipped.
    """
    cfg = merged(cfg)
    crops, labels, used, skipped = [], [], [], []
    for case, image_path, mask_path, label in train_cases:
        try:
            crops.append(prepare_input(str(case), image_path, mask_path, cfg))
        except CaseError as err:
            log.warning("deep training skips %s", err)
            skipped.append({"case": str(case), "reason": str(err)})
            continue
        labels.append(int(label))
        used.append(str(case))
    info = train_resnet(crops, labels, cfg, seed, out_checkpoint)
    return {**info, "cases": used, "n_cases": len(used), "skipped": skipped}


def crop_piece(rows: list[tuple], out_npz, cfg: dict) -> dict:
    """ROI crops (:func:`prepare_input`) of one batch's training cases:
    ``rows`` are (case, image, mask); a case whose image or mask is a marker is left
    out, one whose crop fails keeps its reason. Written to ``out_npz``."""
    crops, skipped, cases = {}, {}, []
    for case, image, mask in rows:
        if marker_reason(image) is not None or marker_reason(mask) is not None:
            continue
        cases.append(str(case))
        try:
            crops[f"crop{len(cases) - 1}"] = prepare_input(str(case), image, mask, cfg)
        except CaseError as err:
            skipped[str(case)] = str(err)
    meta = json.dumps({"cases": cases, "skipped": skipped}, sort_keys=True)
    Path(out_npz).parent.mkdir(parents=True, exist_ok=True)
    with open(out_npz, "wb") as fh:
        np.savez(fh, meta=np.array(meta), **crops)
    return {"cases": cases, "skipped": skipped}


def fit_deep_pieces(pieces: list, labels: pd.Series, out_checkpoint, cfg: dict, seed: int):
    """:func:`fit_deep_model` from per-batch crops (:func:`crop_piece`): the
    cases in case order, those without a label left out; returns its training log."""
    found: dict[str, np.ndarray | str] = {}
    for path in pieces:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            for i, case in enumerate(meta["cases"]):
                found[case] = meta["skipped"].get(case) or npz[f"crop{i}"]
    crops, y, used, skipped = [], [], [], []
    for case in sorted(found):
        if pd.isna(labels[case]):
            continue
        if isinstance(found[case], str):
            log.warning("deep training skips %s", found[case])
            skipped.append({"case": case, "reason": found[case]})
            continue
        crops.append(found[case])
        y.append(int(labels[case]))
        used.append(case)
    info = train_resnet(crops, y, cfg, seed, out_checkpoint)
    return {**info, "cases": used, "n_cases": len(used), "skipped": skipped}


# --------------------------------------------------------------------------- interpretation


def spearman_with_descriptors(features: pd.DataFrame, descriptors: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho of every feature with every radiological descriptor, with BH-FDR q.

    Rows are matched by index; pairs with a missing value are dropped per test (``n``
    says how many cases remain). Tests with fewer than 3 cases or a constant column
    give NaN rho/p/q. Columns: feature, descriptor, n, rho, p, q; rows sorted.
    """
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    common = features.index.intersection(descriptors.index).sort_values()
    rows = []
    for f in sorted(features.columns):
        for d in sorted(descriptors.columns):
            pair = pd.DataFrame(
                {
                    "f": pd.to_numeric(features.loc[common, f], errors="coerce"),
                    "d": pd.to_numeric(descriptors.loc[common, d], errors="coerce"),
                }
            ).dropna()
            rho = p = np.nan
            if len(pair) >= 3 and pair["f"].nunique() > 1 and pair["d"].nunique() > 1:
                res = stats.spearmanr(pair["f"], pair["d"])
                rho, p = float(res.statistic), float(res.pvalue)
            rows.append({"feature": f, "descriptor": d, "n": len(pair), "rho": rho, "p": p})
    out = pd.DataFrame(rows, columns=["feature", "descriptor", "n", "rho", "p"])
    out["q"] = np.nan
    ok = out["p"].notna()
    if ok.any():
        out.loc[ok, "q"] = multipletests(out.loc[ok, "p"], method="fdr_bh")[1]
    return out
