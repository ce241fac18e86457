"""Feature tables through the whole workflow: published tables and speed.

  python bench/bench_tables.py [--tables NAME ...] [--speed] [--no-tables]
                               [--cores 2] [--workdir DIR] [--out bench/RESULTS.md]

Tables: every table of tests/data/feature_tables (``ID``, ``Target``, features) with
the documented config (docs/examples/feature_table.yaml, the table's file name
swapped in), run whole by ``snakemake --cores 2`` in a fresh workdir. Prints, per
table and default model, the CV AUC as the workflow reports it (headline: mean of
the per-fold AUCs; and pooled over the folds, which is what the collection's
reference values are), next to the reference values of that folder's README
(``search``: the best configuration of a non-nested search, optimistic;
``tabpfn32``), and the wall time.

Speed (``--speed``): synthetic tables (bench/bench_cohort.py's generator: 5 latent
factors' worth of correlated features, 10 carry the signal) of 100 x 1,000 and
1,000 x 2,000 as .csv.gz, the same config, run whole. Baseline, in this process: the
same number of model fits done bare (scikit-learn's L2 logistic regression on the
standardised table, 5-fold x 2 repeats + shuffled labels + the final fit, per
default model), so the ratio says what the workflow's chain (selection, imputation,
harmonisation, bootstrap, report) costs over the bare fits. Goals on 2 cores:
100 x 1,000 <= 60 s, 1,000 x 2,000 <= 300 s. Where the time goes: job time per rule
from the Snakemake log.

The section "Feature tables" of RESULTS.md is replaced (other sections kept).
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

from bench_presets import by_rule, parse_log, write_section  # noqa: E402

TABLES = REPO / "tests" / "data" / "feature_tables"
TITLE = "## Feature tables"


def reference_aucs() -> pd.DataFrame:
    """The reference AUC table of tests/data/feature_tables/README.md."""
    rows = []
    for line in (TABLES / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*([\w-]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|$", line)
        if m and m.group(1) != "mean":
            rows.append(
                {"table": m.group(1), "search": float(m.group(2)), "tabpfn32": float(m.group(3))}
            )
    return pd.DataFrame(rows).set_index("table")


FIXED = {
    m: {"groups": ["radiomics", "clinical"], "classifier": {"name": m}}
    for m in ("logistic", "random_forest", "svm")
}


def config_for(name: str, with_fixed: bool = False) -> dict:
    """The example config for table ``name``; ``with_fixed``: the three fixed
    classifiers beside the default (searched) model, in the same run."""
    cfg = yaml.safe_load((REPO / "docs" / "examples" / "feature_table.yaml").read_text())
    cfg["cohort"]["sheet"] = cfg["cohort"]["features_table"] = f"data/{name}.csv.gz"
    cfg["endpoints"] = {"target": cfg["endpoints"].pop("idh")}
    if with_fixed:
        cfg["models"] = {
            "target": {"auto": {"groups": ["radiomics", "clinical"], "search": {}}, **FIXED}
        }
    return cfg


def run_whole(wd: Path, cores: int) -> tuple[float, list]:
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(wd),
        "--configfile", str(wd / "config.yaml"),
        "--cores", str(cores),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed in {wd}:\n{proc.stderr[-3000:]}")
    logs = sorted((wd / ".snakemake" / "log").glob("*.snakemake.log"))
    return wall, by_rule(parse_log(logs[-1].read_text())) if logs else []


def prepare(root: Path, name: str, src: Path, with_fixed: bool = False) -> Path:
    wd = root / name
    shutil.rmtree(wd, ignore_errors=True)
    (wd / "data").mkdir(parents=True)
    shutil.copy(src, wd / "data" / f"{name}.csv.gz")
    cfg = config_for(name, with_fixed)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return wd


def cv_aucs(wd: Path) -> dict[str, tuple[float, float]]:
    """model -> (headline CV AUC, pooled CV AUC)."""
    out = {}
    for met in sorted((wd / "results" / "evaluation" / "target").glob("*/metrics.tsv")):
        m = pd.read_csv(met, sep="\t")
        cv = m[m["cohort"] == "cv"].set_index("metric")["value"]
        out[met.parent.name] = (float(cv["auc"]), float(cv.get("auc_pooled", float("nan"))))
    return out


def bench_tables(
    names: list[str], root: Path, cores: int, with_fixed: bool
) -> tuple[list[str], list[dict]]:
    ref = reference_aucs()
    rows = []
    for name in names:
        wd = prepare(root, name, TABLES / f"{name}.csv.gz", with_fixed)
        wall, _ = run_whole(wd, cores)
        aucs = cv_aucs(wd)
        raw = pd.read_csv(TABLES / f"{name}.csv.gz", nrows=1)
        n = sum(1 for _ in pd.read_csv(TABLES / f"{name}.csv.gz", usecols=["ID"])["ID"])
        row = {"table": name, "cases": n, "features": raw.shape[1] - 2, "wall_s": wall}
        for model, (head, pooled) in aucs.items():
            row[f"{model}"] = head
            row[f"{model} pooled"] = pooled
        row["search (ref.)"] = ref.loc[name, "search"] if name in ref.index else float("nan")
        row["tabpfn32 (ref.)"] = ref.loc[name, "tabpfn32"] if name in ref.index else float("nan")
        rows.append(row)
        print(
            ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )
    df = pd.DataFrame(rows)
    mean = df.drop(columns=["table"]).mean(numeric_only=True)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(v) for v in r.to_numpy()) + " |")
    lines.append("| mean | " + " | ".join(_fmt(mean[c]) for c in df.columns[1:]) + " |")
    return lines, rows


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v == int(v) and v > 10:
        return f"{v:.0f}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def bare_baseline(X: pd.DataFrame, y: pd.Series, n_models: int) -> float:
    """Seconds for the bare fits the workflow does per model (5-fold x 2 repeats, the
    same on shuffled labels, the final fit) with a standardised L2 logistic
    regression, times the number of default models."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    Z = X.to_numpy(float)
    for _ in range(n_models):
        for labels in (y.to_numpy(), np.random.default_rng(0).permutation(y.to_numpy())):
            cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=0)
            for tr, te in cv.split(Z, labels):
                m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
                m.fit(Z[tr], labels[tr]).predict_proba(Z[te])
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Z, y)
    return time.perf_counter() - t0


SIZES = {"100x1000": (100, 1000, 60), "1000x2000": (1000, 2000, 300)}


def bench_speed(root: Path, cores: int, sizes: list[str]) -> list[str]:
    from bench_cohort import synthetic_table

    lines = [
        "| table | goal | workflow wall | bare fits | ratio | slowest rules (job s) |",
        "|---|---|---|---|---|---|",
    ]
    for n, p, goal in (SIZES[s] for s in sizes):
        name = f"synthetic_{n}x{p}"
        X, y = synthetic_table(n, p)
        X = X.drop(columns="center")
        X.columns = [c.replace("T2__", "") for c in X.columns]
        table = X.assign(Target=y.to_numpy()).rename_axis("ID").reset_index()
        src = root / f"{name}.csv.gz"
        root.mkdir(parents=True, exist_ok=True)
        table.to_csv(src, index=False)
        wd = prepare(root, name, src)
        wall, rules = run_whole(wd, cores)
        n_models = len(list((wd / "results" / "evaluation" / "target").glob("*/metrics.tsv")))
        bare = bare_baseline(X, y, n_models)
        top = ", ".join(f"{r['rule']} {r['seconds']:.0f}" for r in rules[:4])
        ok = "met" if wall <= goal else "missed"
        lines.append(
            f"| {n} x {p} | <= {goal} s ({ok}) | {wall:.0f} s | {bare:.1f} s | "
            f"{wall / bare:.1f} | {top} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", nargs="*", default=None, help="names (default: all ten)")
    ap.add_argument("--no-tables", action="store_true")
    ap.add_argument(
        "--with-fixed", action="store_true", help="also the fixed logistic / RF / SVM models"
    )
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/radstudy-bench-tables")
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    root = Path(args.workdir)
    names = args.tables or sorted(p.name.removesuffix(".csv.gz") for p in TABLES.glob("*.csv.gz"))
    body = [
        TITLE,
        "",
        f"`python bench/bench_tables.py` on {platform.node()} ({args.cores} cores), "
        f"{time.strftime('%Y-%m-%d')}: docs/examples/feature_table.yaml per table, whole "
        "workflow, default models. CV AUC: the workflow's headline (mean of per-fold "
        "AUCs, 5 folds x 2 repeats) and pooled over the folds (as the references are: "
        "10-fold, pooled); references from tests/data/feature_tables/README.md "
        "(search = best of a non-nested search, optimistic).",
        "",
    ]
    if not args.no_tables:
        lines, _ = bench_tables(names, root, args.cores, args.with_fixed)
        body += lines + [""]
    if args.speed:
        body += ["Speed (synthetic tables, same config; bare fits = the same number of "
                 "plain logistic-regression fits in-process):", ""]  # fmt: skip
        body += bench_speed(root, args.cores, args.sizes) + [""]
    write_section(Path(args.out), "\n".join(body), TITLE)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
