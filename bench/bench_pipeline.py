"""Benchmarks of the workflow, as ratios against baselines run in this same session.

  python bench/bench_pipeline.py [--cases N] [--out bench/RESULTS.md]

1. per-case throughput: the workflow's per-case stages on 2 cores vs a plain
   sequential pyradiomics loop over the same prepared images and settings;
2. overhead: the workflow's extraction jobs on 1 core vs the bare loop;
3. no-op re-run time (everything up to date);
4. dry-run time of a 5,000-case sheet (DAG building only).
Prints a table and writes it, with the machine description, to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
sys.path.insert(0, str(REPO / "scripts"))


def smk(wd: Path, *args: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [
            str(SNAKEMAKE),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(wd),
            "--configfile",
            str(wd / "config.yaml"),
            *args,
        ],
        check=True,
        cwd=wd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def bare_loop(wd: Path, cfg: dict) -> float:
    """Sequential pyradiomics over the same normalised images and masks, one process."""
    from radstudy.features import extractor_from, load_params

    t = time.perf_counter()
    ext = extractor_from(load_params(cfg["features"]))
    for img in sorted(wd.glob("results/cases/*/*/image.nii.gz")):
        for reader in cfg["cohort"]["readers"]:
            ext.execute(str(img), str(img.parent / f"mask_{reader}.nii.gz"))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument(
        "--params", default="mri_full.yaml", help="pyradiomics params (default: every image type)"
    )
    args = ap.parse_args()
    from radstudy.synth import DEFAULTS, generate_cohort

    tmp = Path(tempfile.mkdtemp(prefix="radstudy-bench-"))
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["cohort"]["sheet"] = "data/cases.tsv"
    cfg["cohort"].update({"sequences": ["T2"], "readers": ["R1", "R2"], "repeats": {}})
    cfg["features"]["params"] = args.params
    per = max(2, args.cases // 4)
    spec = {
        "sequences": ["T2"],
        "readers": ["R1", "R2"],
        "centers": [{**c, "n": per} for c in DEFAULTS["centers"]],
    }
    cfg["synthetic"] = {"enabled": True, "spec": spec}
    generate_cohort(tmp / "cohort", spec)
    rows = []
    target = "extract_radiomics"
    for cores in (2, 1):
        wd = tmp / f"run{cores}"
        wd.mkdir()
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
        shutil.copytree(tmp / "cohort", wd / "data")
        smk(wd, "--cores", "2", "--until", "normalize_image")  # preprocessing: not timed
        rows.append(
            (
                f"workflow per-case extraction, {cores} core(s)",
                smk(wd, "--cores", str(cores), "--until", target),
            )
        )
    bare = bare_loop(tmp / "run1", cfg)
    rows.append(("bare sequential pyradiomics loop (1 process)", bare))
    rows.append(
        ("no-op re-run (all up to date)", smk(tmp / "run1", "--cores", "1", "--until", target))
    )
    big = pd.read_csv(tmp / "cohort" / "cases.tsv", sep="\t", dtype=str)
    many = pd.concat(
        [big.assign(case_id=big["case_id"] + f"x{i}") for i in range(5000 // len(big) + 1)]
    ).head(5000)
    wd5k = tmp / "dry5000"
    wd5k.mkdir()
    shutil.copytree(tmp / "cohort", wd5k / "data")
    many.to_csv(wd5k / "data" / "cases.tsv", sep="\t", index=False)
    (wd5k / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows.append(("dry-run of a 5,000-case sheet", smk(wd5k, "--cores", "2", "--dry-run")))
    t2, t1 = rows[0][1], rows[1][1]
    lines = [
        f"# radstudy benchmark ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.platform()}",
        f"Cohort: {len(big)} synthetic cases, T2, readers R1+R2, "
        f"params {cfg['features']['params']}",
        "",
        "| measurement | seconds |",
        "|---|---|",
        *[f"| {name} | {sec:.1f} |" for name, sec in rows],
        "",
        "| ratio | value | goal |",
        "|---|---|---|",
        f"| throughput: bare loop / workflow on 2 cores | {bare / t2:.2f}x | >= 1.8x |",
        f"| overhead: workflow on 1 core / bare loop - 1 | {100 * (t1 / bare - 1):.0f}% | <= 10% |",
        f"| dry-run 5,000 cases | {rows[-1][1]:.1f} s | < 60 s |",
        "",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
