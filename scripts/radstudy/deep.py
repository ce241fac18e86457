"""Deep features: MONAI ResNet (18/34/50) on the tumor ROI crop, penultimate layer.

Weights come from a checkpoint path (state_dict, e.g. MedicalNet or a model
trained elsewhere), from training on the TRAINING cases only (``fit_deep_model``,
supervised on the binary endpoint), or a seeded random initialisation (smoke
tests only). Runs on the CPU deterministically; uses a GPU when one is present
and ``device`` allows it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

log = logging.getLogger(__name__)

DEFAULTS = {
    "arch": "resnet18",
    "weights": "random",
    "spatial_dims": 3,
    "crop_size": 32,  # voxels per side of the ROI crop fed to the network
    "margin_mm": 4.0,
    "device": "auto",
    "threads": 1,
    "epochs": 5,
    "batch_size": 4,
    "learning_rate": 1e-3,
}
FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def _torch(cfg: dict, seed: int):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    want = cfg.get("device", "auto")
    device = "cuda" if want in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    return torch, device


def build_resnet(arch: str = "resnet18", spatial_dims: int = 3, n_classes: int = 2, seed: int = 0):
    """A MONAI ResNet with a seeded initialisation; ``fc`` is the classification head."""
    import torch
    from monai.networks import nets

    torch.manual_seed(seed)
    return getattr(nets, arch)(spatial_dims=spatial_dims, n_input_channels=1, num_classes=n_classes)


def roi_crop(
    image: sitk.Image,
    mask: sitk.Image,
    size: int = 32,
    margin_mm: float = 4.0,
    spatial_dims: int = 3,
) -> np.ndarray:
    """Tumor bounding box + margin, resampled to ``size`` per side (2D: largest slice)."""
    m = sitk.GetArrayFromImage(mask).astype(bool)
    img = sitk.GetArrayFromImage(image).astype(np.float32)
    if not m.any():
        raise ValueError("empty ROI mask")
    sp = np.asarray(image.GetSpacing())[::-1]  # z, y, x
    idx = np.argwhere(m)
    pad = np.ceil(margin_mm / sp).astype(int)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, m.shape)
    if spatial_dims == 2:
        z = int(np.argmax(m.reshape(m.shape[0], -1).sum(1)))
        lo[0], hi[0] = z, z + 1
    crop = img[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    from scipy import ndimage

    target = (size, size) if spatial_dims == 2 else (size, size, size)
    src = crop[0] if spatial_dims == 2 else crop
    zoom = [t / s for t, s in zip(target, src.shape, strict=True)]
    out = ndimage.zoom(src, zoom, order=1)
    return (out / 100.0).astype(np.float32)  # z-scored x 100 upstream -> unit scale


def _features(net, x, torch):
    """Penultimate (global-pooled) activations of a MONAI ResNet."""
    net.eval()
    with torch.no_grad():
        f = net.conv1(x)
        f = net.act(net.bn1(f))
        if not getattr(net, "no_max_pool", False):
            f = net.maxpool(f)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            f = layer(f)
        f = net.avgpool(f)
    return f.flatten(1).cpu().numpy().astype(np.float64)


def load_network(cfg: dict, checkpoint: str | None, seed: int):
    cfg = {**DEFAULTS, **cfg}
    torch, device = _torch(cfg, seed)
    net = build_resnet(cfg["arch"], int(cfg["spatial_dims"]), seed=seed)
    if checkpoint and checkpoint not in ("random", "train"):
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        res = net.load_state_dict(state, strict=False)
        log.info(
            "checkpoint %s: missing %d keys, unexpected %d keys",
            checkpoint,
            len(res.missing_keys),
            len(res.unexpected_keys),
        )
    return net.to(device), torch, device


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
    """One row ``{seq}__deep_{arch}_{i:03d}`` of penultimate-layer features."""
    cfg = {**DEFAULTS, **(cfg or {})}
    net, torch, device = load_network(cfg, checkpoint, seed)
    crop = roi_crop(
        sitk.ReadImage(str(image_path)),
        sitk.ReadImage(str(mask_path)),
        int(cfg["crop_size"]),
        float(cfg["margin_mm"]),
        int(cfg["spatial_dims"]),
    )
    x = torch.from_numpy(crop[None, None]).to(device)
    feats = _features(net, x, torch)[0]
    cols = [f"{seq}__deep_{cfg['arch']}_{i:03d}" for i in range(len(feats))]
    row = pd.DataFrame([feats], columns=cols, index=pd.Index([case], name="case_id"))
    Path(out_parquet).parent.mkdir(parents=True, exist_ok=True)
    row.to_parquet(out_parquet)
    return row


def fit_deep_model(
    cases: list[tuple[str, str, str, int]], out_checkpoint, cfg: dict, seed: int
) -> dict:
    """Train the ResNet on TRAINING cases only (case, image, mask, label); save state_dict."""
    cfg = {**DEFAULTS, **(cfg or {})}
    net, torch, device = load_network(cfg, None, seed)
    X = np.stack(
        [
            roi_crop(
                sitk.ReadImage(str(i)),
                sitk.ReadImage(str(m)),
                int(cfg["crop_size"]),
                float(cfg["margin_mm"]),
                int(cfg["spatial_dims"]),
            )
            for _, i, m, _ in cases
        ]
    )[:, None]
    y = np.asarray([lab for *_, lab in cases], dtype=np.int64)
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["learning_rate"]))
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(int(cfg["epochs"])):
        net.train()
        order = rng.permutation(len(y))
        total = 0.0
        for start in range(0, len(y), int(cfg["batch_size"])):
            b = order[start : start + int(cfg["batch_size"])]
            xb = torch.from_numpy(X[b]).to(device)
            flip = rng.integers(0, 2, len(b)).astype(bool)  # seeded augmentation
            if flip.any():
                xb[torch.from_numpy(flip)] = torch.flip(xb[torch.from_numpy(flip)], dims=[-1])
            loss = torch.nn.functional.cross_entropy(net(xb), torch.from_numpy(y[b]).to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        history.append({"epoch": epoch, "loss": total / len(y)})
        log.info("epoch %d loss %.4f", epoch, total / len(y))
    Path(out_checkpoint).parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out_checkpoint)
    return {"history": history, "n_cases": len(y)}


def spearman_with_descriptors(features: pd.DataFrame, descriptors: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho of each feature with each radiological descriptor, with FDR q-values."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    rows = []
    common = features.index.intersection(descriptors.index)
    for f in sorted(features.columns):
        for d in sorted(descriptors.columns):
            rho, p = stats.spearmanr(features.loc[common, f], descriptors.loc[common, d])
            rows.append({"feature": f, "descriptor": d, "rho": rho, "p": p})
    out = pd.DataFrame(rows)
    if len(out):
        out["q"] = multipletests(out["p"].fillna(1.0), method="fdr_bh")[1]
    return out
