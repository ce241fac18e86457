"""Benchmark of the cohort stage: nested CV of the whole learned chain on a large table.

  python bench/bench_cohort.py [--cases 1000] [--features 2000] [--jobs 2] [--out FILE]

A synthetic feature table (cases x features, 5 centers with additive and
multiplicative center effects, a binary outcome driven by 10 features) goes through
the workflow's model pipeline (radstudy.stages.build_pipeline: ComBat -> variance ->
univariate -> Spearman pruning -> L1-logistic LASSO with inner CV -> logistic
regression with an inner-CV grid over C), cross-validated 5-fold x 1 repeat: every
fold refits the whole chain (nested CV). Prints the wall time and the CV AUC, and
appends the result to bench/RESULTS.md (or --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def synthetic_table(n: int, p: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    centers = np.array(list("ABCDE"))[rng.integers(0, 5, n)]
    latent = rng.normal(size=(n, 20))
    load = rng.normal(size=(20, p)) * 0.5
    F = latent @ load + rng.normal(size=(n, p))
    logit = F[:, :10].sum(axis=1) / np.sqrt(10 * 6)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * logit))).astype(int)
    gain = {c: rng.uniform(0.7, 1.5, p) for c in "ABCDE"}
    shift = {c: rng.normal(0, 1, p) for c in "ABCDE"}
    for c in "ABCDE":
        rows = centers == c
        F[rows] = F[rows] * gain[c] + shift[c]
    ids = pd.Index([f"c{i:05d}" for i in range(n)], name="case_id")
    X = pd.DataFrame(F, index=ids, columns=[f"T2__f{j:04d}" for j in range(p)])
    X.insert(0, "center", centers)
    return X, pd.Series(y, index=ids, name="y")


def main() -> None:
    from radstudy.config import with_defaults
    from radstudy.evaluation import auc_ci_delong
    from radstudy.models import cross_validated_predictions
    from radstudy.stages import build_pipeline

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--features", type=int, default=2000)
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    X, y = synthetic_table(args.cases, args.features)
    cfg = {
        "harmonization": {"enabled": True},
        "selection": {
            "variance": {"threshold": 1e-8},
            "univariate": {"test": "mannwhitney", "alpha": 0.1, "fdr": False},
            "correlation": {"threshold": 0.9, "method": "spearman"},
            "lasso": {"cv": 5, "max_features": 10},
        },
    }
    spec = {
        "groups": ["radiomics"],
        "classifier": {"name": "logistic", "grid": {"C": [0.1, 1.0, 10.0]}},
    }
    # the schema's defaults, as the workflow fills them
    cfg = with_defaults({**cfg, "models": {"y": {"m": spec}}})
    spec = cfg["models"]["y"]["m"]
    pipe = build_pipeline(spec, cfg, {"type": "binary"}, None, seed=0)
    t = time.perf_counter()
    pred = cross_validated_predictions(pipe, X, y, n_splits=5, n_repeats=1, random_state=0)
    wall = time.perf_counter() - t
    auc, lo, hi = auc_ci_delong(pred["y_true"], pred["y_prob"])
    line = (
        f"| nested CV (5 folds; ComBat, selection, LASSO CV, inner grid CV) on "
        f"{args.cases} x {args.features} | {wall:.1f} s | < 300 s | CV AUC {auc:.3f} ({lo:.3f}-{hi:.3f}) |"
    )
    print(line)
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    out = Path(args.out)
    text = out.read_text() if out.exists() else "# radstudy benchmarks\n"
    text += (
        f"\n## Cohort stage ({time.strftime('%Y-%m-%d')})\n\n{machine}\n\n"
        "| measurement | wall time | goal | check |\n|---|---|---|---|\n" + line + "\n"
    )
    out.write_text(text)


if __name__ == "__main__":
    main()
