"""Benchmarks of the per-case stages, as ratios against baselines run in this same session.

  python bench/bench_pipeline.py [--cases N] [--params FILE] [--sts-spacing MM]
                                 [--sts-params FILE] [--no-sts] [--out bench/RESULTS.md]

Two cohorts (pyradiomics params: --params, default every image type, for the
synthetic cases; --sts-params, default original image only, for the real ones):
  - synthetic: N demo-sized cases (64^3 voxels, tumors of ~5,000 voxels), T2,
    readers R1 + R2;
  - real: the 10 soft-tissue-sarcoma MRI volumes of tests/data/sts_mri (one GTV
    mask each), resampled to --sts-spacing mm.
For each: preprocessing runs first (not timed), then the workflow's extraction
stage (``--until extract_radiomics``) on 2 cores and again (forced) on 1 core, the no-op re-run
(Snakemake start-up, DAG and up-to-date checks only), and a plain sequential
pyradiomics loop (one process, ``extractor.execute`` per image x mask) over the
same prepared images and masks. Ratios:
  throughput = bare loop / workflow on 2 cores     (goal >= 1.8x)
  overhead   = workflow on 1 core / bare loop - 1  (goal <= 10 %)
each end to end (the whole ``snakemake`` call) and for the stage alone (minus
the no-op re-run, which is the fixed start-up cost of any Snakemake call).
Also: dry-run time of a 5,000-case sheet (goal < 60 s).
Writes its section of RESULTS.md (other sections are kept).
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
STS = REPO / "tests" / "data" / "sts_mri"
sys.path.insert(0, str(REPO / "scripts"))
TITLE = "## Per-case stages: workflow vs a bare pyradiomics loop"


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


def bare_loop(wd: Path, cfg: dict) -> tuple[float, int]:
    """Sequential pyradiomics over the workflow's prepared images and masks, one process."""
    from radstudy.features import extractor_from, load_params

    t = time.perf_counter()
    ext = extractor_from(load_params(cfg["features"]))  # pyradiomics warnings: off the terminal
    n = 0
    for img in sorted(wd.glob("results/cases/*/*/image.nii.gz")):
        for reader in cfg["cohort"]["readers"]:
            ext.execute(str(img), str(img.parent / f"mask_{reader}.nii.gz"))
            n += 1
    return time.perf_counter() - t, n


def synthetic_setup(tmp: Path, n_cases: int, params: str) -> tuple[Path, dict]:
    from radstudy.synth import DEFAULTS, generate_cohort

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["cohort"]["sheet"] = "data/cases.tsv"
    cfg["cohort"].update({"sequences": ["T2"], "readers": ["R1", "R2"], "repeats": {}})
    cfg["features"]["params"] = params
    per = max(2, n_cases // 4)
    spec = {
        "sequences": ["T2"],
        "readers": ["R1", "R2"],
        "centers": [{**c, "n": per} for c in DEFAULTS["centers"]],
    }
    cfg["synthetic"] = {"enabled": True, "spec": spec}
    generate_cohort(tmp / "cohort", spec)
    return tmp / "cohort", cfg


def sts_setup(tmp: Path, spacing: float, params: str) -> tuple[Path, dict]:
    """The 10 real STS volumes as one center (sheet with absolute paths)."""
    rows = [
        {
            "case_id": d.name,
            "center": "STS",
            "split": "train",
            "image_T1": str(d / "MR_T1_image.nii.gz"),
            "mask_R1": str(d / "MR_T1_mask.nii.gz"),
        }
        for d in sorted(STS.glob("STS_*"))
    ]
    out = tmp / "sts_data"
    out.mkdir()
    pd.DataFrame(rows).to_csv(out / "cases.tsv", sep="\t", index=False)
    cfg = {
        "study": {"name": "bench_sts", "description": "10 real STS MRI T1 volumes"},
        "cohort": {
            "sheet": "data/cases.tsv",
            "sequences": ["T1"],
            "readers": ["R1"],
            "reference_reader": "R1",
            "repeats": {},
            "clinical": [],
            "descriptors": [],
            "organ_mask_column": "",
            "require": [],
        },
        "synthetic": {"enabled": False, "spec": {}},
        "endpoints": {},
        "models": {},
        "preprocess": {"spacing": [spacing] * 3},
        "features": {"params": params, "model_reader": "R1"},
        "deep": {"enabled": False},
        "harmonization": {"enabled": False},
        "reproducibility": {"enabled": False},
    }
    return out, cfg


def measure(tmp: Path, name: str, data: Path, cfg: dict) -> dict:
    """Workflow extraction on 2 and 1 cores, its no-op re-run, and the bare loop."""
    wd = tmp / name
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copytree(data, wd / "data")
    smk(wd, "--cores", "2", "--until", "normalize_image")  # preprocessing: not timed
    until = ("--until", "extract_radiomics")
    res = {2: smk(wd, "--cores", "2", *until)}
    res[1] = smk(wd, "--cores", "1", "--forcerun", "extract_radiomics", *until)
    res["noop"] = smk(wd, "--cores", "1", *until)
    res["bare"], res["n"] = bare_loop(wd, cfg)
    return res


def dry_run_5000(tmp: Path, data: Path, cfg: dict) -> float:
    big = pd.read_csv(data / "cases.tsv", sep="\t", dtype=str)
    many = pd.concat(
        [big.assign(case_id=big["case_id"] + f"x{i}") for i in range(5000 // len(big) + 1)]
    ).head(5000)
    wd = tmp / "dry5000"
    wd.mkdir()
    shutil.copytree(data, wd / "data")
    many.to_csv(wd / "data" / "cases.tsv", sep="\t", index=False)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    return smk(wd, "--cores", "2", "--dry-run")


def ratio_rows(label: str, r: dict) -> list[str]:
    s2, s1, bare = r[2] - r["noop"], r[1] - r["noop"], r["bare"]
    return [
        f"| {label} | throughput, end to end | {bare / r[2]:.2f}x | >= 1.8x |",
        f"| {label} | throughput, stage | {bare / s2:.2f}x | >= 1.8x |",
        f"| {label} | overhead, end to end | {100 * (r[1] / bare - 1):+.0f} % | <= 10 % |",
        f"| {label} | overhead, stage | {100 * (s1 / bare - 1):+.0f} % | <= 10 % |",
    ]


def write_section(path: Path, body: str) -> None:
    """Replace this benchmark's section of RESULTS.md, keep the others."""
    text = path.read_text() if path.exists() else "# radstudy benchmarks\n"
    head, *sections = text.split("\n## ")
    sections = [s for s in sections if not ("## " + s).startswith(TITLE)]
    head = "# radstudy benchmarks"
    path.write_text(
        "\n\n".join([head, body.strip(), *("## " + s.strip() for s in sections)]) + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=24, help="synthetic cases (4 centers)")
    ap.add_argument("--sts-spacing", type=float, default=1.0, help="mm, real STS volumes")
    ap.add_argument(
        "--sts-params",
        default="mri_fast.yaml",
        help="params for the real volumes (every image type at 1 mm: ~10 min per large case)",
    )
    ap.add_argument("--no-sts", action="store_true", help="skip the real STS volumes")
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument(
        "--params", default="mri_full.yaml", help="pyradiomics params (default: every image type)"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="radstudy-bench-"))
    cohorts = {}
    syn_data, syn_cfg = synthetic_setup(tmp, args.cases, args.params)
    cohorts["synthetic"] = measure(tmp, "syn", syn_data, syn_cfg)
    if not args.no_sts:
        sts_data, sts_cfg = sts_setup(tmp, args.sts_spacing, args.sts_params)
        cohorts["real STS"] = measure(tmp, "sts", sts_data, sts_cfg)
    dry = dry_run_5000(tmp, syn_data, syn_cfg)
    n_syn = len(pd.read_csv(syn_data / "cases.tsv", sep="\t"))
    desc = {
        "synthetic": f"{n_syn} synthetic cases, T2, 64^3 voxels, readers R1 + R2",
        "real STS": f"10 real STS MRI T1 volumes at {args.sts_spacing:g} mm, one GTV mask each, "
        f"{args.sts_params}",
    }
    lines = [
        f"{TITLE} ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.platform()}. Synthetic: params {args.params}. `python bench/bench_pipeline.py`.",
        "",
        "| cohort | extractions | workflow, 2 cores | workflow, 1 core | no-op re-run | bare loop |",
        "|---|---|---|---|---|---|",
        *[
            f"| {desc[k]} | {r['n']} | {r[2]:.1f} s | {r[1]:.1f} s | {r['noop']:.1f} s "
            f"| {r['bare']:.1f} s |"
            for k, r in cohorts.items()
        ],
        "",
        "| cohort | ratio | value | goal |",
        "|---|---|---|---|",
        *[row for k, r in cohorts.items() for row in ratio_rows(k, r)],
        f"| 5,000-case sheet | dry-run | {dry:.1f} s | < 60 s |",
        "",
        "Stage = the call minus the no-op re-run (Snakemake start-up, DAG, up-to-date",
        "checks: the fixed cost of any call). The workflow extracts every reader of a case",
        "in one job and applies each filter once for all readers; the bare loop runs",
        "`execute` per image x mask, as a hand-written script does.",
    ]
    write_section(Path(args.out), "\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
