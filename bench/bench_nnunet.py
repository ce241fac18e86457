"""nnU-Net trained inside the study vs SLIC + FCM, against the generator's true masks.

  python bench/bench_nnunet.py [--trainer nnUNetTrainer_5epochs] [--configuration 2d]
                               [--threads 2] [--scale 1.0] [--out bench/RESULTS.md]

Generates the default synthetic cohort (radstudy.synth DEFAULTS: 4 centers, 60 cases;
``--scale`` shrinks every center), prepares every case as the workflow does (1 mm, N4),
trains nnU-Net (radstudy.nnunet: the workflow's export, planning, training) on the
TRAINING cases' R1 masks, predicts the test and external cases, segments them with
SLIC + FCM too, and reports Dice against the true mask (truth/{case}/mask_true.nii.gz)
per split and center, with the wall time of training and of prediction per case.
Writes (or replaces) the section "## nnU-Net in the study" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))
SECTION = "## nnU-Net in the study"


def replace_section(text: str, section: str) -> str:
    """``text`` with its ``## nnU-Net in the study`` section replaced (or appended)."""
    pattern = re.compile(rf"^{re.escape(SECTION)}.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    return text.rstrip() + "\n\n" + section.rstrip() + "\n"


def main() -> None:
    from bench_segmentation import prepare_synthetic_case, segment_prepared_case

    from radstudy import nnunet
    from radstudy.agreement import dice
    from radstudy.synth import DEFAULTS, generate_cohort

    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", default="T2")
    ap.add_argument("--trainer", default="nnUNetTrainer_5epochs")
    ap.add_argument("--configuration", default="2d")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="cases per center x this")
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    spec = {
        **DEFAULTS,
        "centers": [{**c, "n": max(4, round(c["n"] * args.scale))} for c in DEFAULTS["centers"]],
    }
    tmp = Path(tempfile.mkdtemp(prefix="radstudy-nnunet-"))
    sheet = pd.read_csv(generate_cohort(tmp / "data", spec), sep="\t", dtype=str)
    t0 = time.perf_counter()
    cases = {}
    for _, r in sheet.iterrows():
        cases[r["case_id"]] = prepare_synthetic_case(tmp, r, args.seq, ("R1",))
    prep_s = time.perf_counter() - t0
    train_ids = sheet.loc[sheet["split"] == "train", "case_id"].tolist()
    held_out = sheet.loc[sheet["split"] != "train"]

    root = tmp / "nnunet"
    nnunet.export_dataset(
        {c: (cases[c] / "prepared.nii.gz", cases[c] / "mask_R1.nii.gz") for c in train_ids},
        root / "raw",
        args.seq,
        "MRI",
    )
    t0 = time.perf_counter()
    nnunet.plan_and_preprocess(root, args.seq, args.configuration, args.threads)
    plan_s = time.perf_counter() - t0
    card = nnunet.train(
        root, args.seq, args.configuration, ["all"], args.trainer, "cpu", args.threads
    )
    seconds = nnunet.predict_cases(
        {
            c: (
                cases[c] / "prepared.nii.gz",
                cases[c] / "mask_nnunet.nii.gz",
                cases[c] / "m.nii.gz",
            )
            for c in held_out["case_id"]
        },
        card["folder"],
        ["all"],
        "cpu",
        args.threads,
    )
    rows = []
    for _, r in held_out.iterrows():
        d = cases[r["case_id"]]
        segment_prepared_case(d, r["case_id"], args.seq)
        arr = {
            k: sitk.GetArrayFromImage(sitk.ReadImage(str(d / f"mask_{k}.nii.gz"))) > 0
            for k in ("nnunet", "slic", "R1", "truth")
        }
        rows.append(
            {"case_id": r["case_id"], "center": r["center"], "split": r["split"]}
            | {f"dice_{k}": dice(arr[k], arr["truth"]) for k in ("nnunet", "slic", "R1")}
        )
    df = pd.DataFrame(rows)
    cols = ["dice_nnunet", "dice_slic", "dice_R1"]
    by = df.groupby(["split", "center"])[cols].agg(["mean", "size"])
    table = [
        f"| {s} | {c} | {int(v[('dice_nnunet', 'size')])} | {v[('dice_nnunet', 'mean')]:.3f} "
        f"| {v[('dice_slic', 'mean')]:.3f} | {v[('dice_R1', 'mean')]:.3f} |"
        for (s, c), v in by.iterrows()
    ]
    mean = df[cols].mean()
    table.append(
        f"| all held out | | {len(df)} | {mean['dice_nnunet']:.3f} | {mean['dice_slic']:.3f} "
        f"| {mean['dice_R1']:.3f} |"
    )
    done = [v for v in seconds.values() if v is not None]  # None: excluded
    per_case = sum(done) / max(1, len(done))
    reduced = "" if args.scale == 1.0 else f", reduced: cases per center x {args.scale}"
    section = "\n".join(
        [
            f"{SECTION} ({time.strftime('%Y-%m-%d')})",
            "",
            f"`python bench/bench_nnunet.py --trainer {args.trainer} --configuration "
            f"{args.configuration} --threads {args.threads}"
            + (f" --scale {args.scale}" if args.scale != 1.0 else "")
            + f"`: default synthetic cohort ({len(sheet)} cases{reduced}), sequence "
            f"{args.seq}, prepared as the workflow does (1 mm, N4). nnU-Net v2 "
            f"({args.configuration}, {args.trainer}, fold all, CPU, {args.threads} threads) "
            f"trained on the {len(train_ids)} training-split cases' R1 masks "
            "(radstudy.nnunet: the workflow's export, planning and training); test and "
            "external cases predicted with the frozen model. Dice against the "
            "generator's true tumor mask (goal: nnU-Net >= 0.85 and >= SLIC + FCM):",
            "",
            "| split | center | cases | nnU-Net | SLIC + FCM | reader R1 |",
            "|---|---|---|---|---|---|",
            *table,
            "",
            f"Wall time (CPU, this shared 2-core machine): preparation {prep_s:.0f} s "
            f"for {len(sheet)} cases; planning + preprocessing {plan_s:.0f} s; training "
            f"{card['train_seconds']:.0f} s (one fold, nnU-Net's validation included); "
            f"prediction {per_case:.1f} s per case (model loaded once, sliding window with "
            "mirroring). No GPU was available to this bench.",
        ]
    )
    print(section)
    out = Path(args.out)
    out.write_text(
        replace_section(out.read_text() if out.exists() else "# radstudy benchmarks\n", section)
    )


if __name__ == "__main__":
    main()
