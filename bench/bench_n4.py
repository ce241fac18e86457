"""N4 bias correction: time and quality by shrink factor, in one process.

On the demo's synthetic cohort (every center, each case's T1 after resampling to
1 mm, as rule prepare_image does) this runs radstudy.preprocess.n4_correct with
each shrink factor and reports, per factor: seconds per case (one ITK thread) and
the intensity coefficient of variation inside the liver mask (lower: a flatter
organ, a better correction; 'none' is the uncorrected image). Ratios are against
the first factor, measured in the same process.

    python bench/bench_n4.py [--factors 2 4] [--cases 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import SimpleITK as sitk  # noqa: E402
import yaml  # noqa: E402

from radstudy import preprocess as pp  # noqa: E402
from radstudy.synth import generate_cohort  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _liver_cv(image: sitk.Image, liver: np.ndarray) -> float:
    vals = sitk.GetArrayViewFromImage(image)[liver]
    return float(vals.std() / vals.mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--cases", type=int, default=12, help="cases (first T1s in sheet order)")
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    spec = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]["spec"]
    base = pp.merged({"modality": "MRI"})
    seconds = {f: [] for f in args.factors}
    cv = {f: [] for f in ["none", *args.factors]}
    with tempfile.TemporaryDirectory() as tmp:
        sheet = generate_cohort(tmp, spec)
        import pandas as pd

        rows = pd.read_csv(sheet, sep="\t", dtype=str)
        # every center in turn, so each scanner's bias and spacing is in the sample
        rows = rows.assign(k=rows.groupby("center").cumcount()).sort_values(["k", "center"])
        for row in rows.head(args.cases).itertuples():
            image = sitk.ReadImage(str(Path(tmp) / row.image_T1))
            out = pp.resample(image, pp.target_spacing(base, image), "bspline")
            liver_img = sitk.ReadImage(str(Path(tmp) / f"masks/{row.case_id}_liver.nii.gz"))
            liver = sitk.GetArrayFromImage(pp.resample_mask_to(liver_img, out)).astype(bool)
            cv["none"].append(_liver_cv(out, liver))
            for f in args.factors:
                cfg = {**base, "n4": {**base["n4"], "shrink_factor": f}}
                t0 = time.perf_counter()
                corrected, _ = pp.n4_correct(out, cfg)
                seconds[f].append(time.perf_counter() - t0)
                cv[f].append(_liver_cv(corrected, liver))
    ref = float(np.mean(seconds[args.factors[0]]))
    print(f"{args.cases} T1 cases of the demo cohort, 1 ITK thread")
    print("| shrink factor | s per case | time ratio | liver CV (mean) |")
    print("|---|---|---|---|")
    print(f"| none | - | - | {np.mean(cv['none']):.4f} |")
    for f in args.factors:
        s = float(np.mean(seconds[f]))
        print(f"| {f} | {s:.2f} | {s / ref:.2f} | {np.mean(cv[f]):.4f} |")


if __name__ == "__main__":
    main()
