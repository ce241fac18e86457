"""SLIC superpixels + fuzzy c-means against the generator's true tumor masks.

  python bench/bench_segmentation.py [--seq T2] [--out bench/RESULTS.md]

Generates the default synthetic cohort (radstudy.synth DEFAULTS: 4 centers, 60
cases), prepares every case as the workflow does (1 mm resampling, N4), segments it
with the workflow's SLIC + FCM inside the organ mask, and reports Dice against the
true mask written by the generator (truth/{case}/mask_true.nii.gz), per center and
overall, next to the Dice of the human-like reader masks R1 and R2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def prepare_synthetic_case(root: Path, row, seq: str, readers) -> Path:
    """One case of a cohort generated under ``root / "data"`` prepared as the workflow
    does (1 mm, N4), with its ``readers``' masks, organ mask and the generator's true
    mask on the prepared grid: ``root/cases/{case}/`` (prepared.nii.gz, mask_{k}.nii.gz;
    the first reader is the reference)."""
    from radstudy.preprocess import prepare_case

    case, out = row["case_id"], root / "cases" / row["case_id"]
    masks = {r: root / "data" / row[f"mask_{r}"] for r in readers}
    masks["organ"] = root / "data" / row["organ_mask"]
    masks["truth"] = root / "data" / "truth" / case / "mask_true.nii.gz"
    prepare_case(
        case,
        seq,
        root / "data" / row[f"image_{seq}"],
        masks,
        readers[0],
        out / "prepared.nii.gz",
        {k: out / f"mask_{k}.nii.gz" for k in masks},
        out / "qc.json",
        {"spacing": [1.0, 1.0, 1.0], "modality": "MRI"},
    )
    return out


def segment_prepared_case(out: Path, case: str, seq: str) -> None:
    """SLIC + FCM (the workflow's defaults, seed 0) on a case that
    :func:`prepare_synthetic_case` prepared in ``out``: mask_slic.nii.gz, membership."""
    from radstudy.segment import segment_case

    segment_case(
        case,
        out / "prepared.nii.gz",
        out / "mask_organ.nii.gz",
        out / "mask_slic.nii.gz",
        out / "membership_slic.nii.gz",
        {},
        seed=0,
        sequence=seq,
    )


def main() -> None:
    from radstudy.agreement import dice
    from radstudy.synth import DEFAULTS, generate_cohort

    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", default="T2")
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--cases", type=int, default=0, help="first N cases only (0 = all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="radstudy-seg-"))
    sheet = pd.read_csv(generate_cohort(tmp / "data", DEFAULTS), sep="\t", dtype=str)
    rows, t0 = [], time.perf_counter()
    for _, r in (sheet.head(args.cases) if args.cases else sheet).iterrows():
        case = r["case_id"]
        out = prepare_synthetic_case(tmp, r, args.seq, ("R1", "R2"))
        segment_prepared_case(out, case, args.seq)
        arr = {
            k: sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"mask_{k}.nii.gz"))) > 0
            for k in ("slic", "R1", "R2", "truth")
        }
        rows.append(
            {"case_id": case, "center": r["center"]}
            | {f"dice_{k}": dice(arr[k], arr["truth"]) for k in ("slic", "R1", "R2")}
        )
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    by = df.groupby("center")[["dice_slic", "dice_R1", "dice_R2"]].mean()
    by.loc["all"] = df[["dice_slic", "dice_R1", "dice_R2"]].mean()
    lines = [
        f"\n## Segmentation: SLIC + FCM vs the true mask ({time.strftime('%Y-%m-%d')})\n",
        f"Default synthetic cohort, {len(df)} cases, sequence {args.seq}, 1 mm, N4, "
        f"SLIC + FCM with the default settings inside the organ mask "
        f"({wall:.0f} s for preparation + segmentation). Mean Dice vs the generator's "
        "true tumor mask (goal for SLIC + FCM: >= 0.85):\n",
        "| center | SLIC + FCM | reader R1 | reader R2 |",
        "|---|---|---|---|",
        *[
            f"| {c} | {v['dice_slic']:.3f} | {v['dice_R1']:.3f} | {v['dice_R2']:.3f} |"
            for c, v in by.iterrows()
        ],
        f"\nWorst case: {df.loc[df['dice_slic'].idxmin(), 'case_id']} "
        f"(Dice {df['dice_slic'].min():.3f}); share of cases >= 0.85: "
        f"{(df['dice_slic'] >= 0.85).mean():.2f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.write_text((out.read_text() if out.exists() else "# radstudy benchmarks\n") + text)


if __name__ == "__main__":
    main()
