"""Planning a registry-scale DAG: dry run and no-op rerun of 1,000 to 50,000 cases.

  python bench/bench_dag.py [--sizes 1000 5000 20000 50000] [--workdir DIR]
                            [--out bench/RESULTS.md] [--no-write] [--profile N]

The demo study (config.yaml: 2 sequences, 4 readers + organ mask, deep features,
5 models) on its synthetic sheet (60 cases, 4 centers) repeated to N cases: copy i
of a row gets case id ``{case_id}x{i}`` and keeps the row's center, split and files
(the sheet's checks need the files to exist; the dry run never opens them). One
workdir per size under ``--workdir`` (default a temporary folder). Per size:

  - dry run: ``snakemake -n --cores 2`` as a user types it (every job printed);
  - no-op rerun: every output of the dry run created empty, oldest stage first (so
    every file is newer than its inputs), then ``snakemake -n --cores 2`` again: it
    must plan nothing ("Nothing to be done"), and is the fixed cost of every start.

Each is timed from outside (wall seconds) with its peak resident memory
(``/usr/bin/time``'s maximum RSS of the snakemake process). The exponent is the
least-squares slope of log(seconds) on log(cases). Goal (2 cores): 20,000 cases
under 60 s, exponent <= 1.1, peak memory under 4 GB at 50,000. ``--profile N``
also runs the dry run of N cases under cProfile and prints the 25 costliest calls.

Writes the section "## Planning a registry-scale DAG" of ``--out`` (the other
sections are kept) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_pipeline import snakemake_cmd  # noqa: E402

TITLE = "## Planning a registry-scale DAG"
GOALS = {"seconds_20000": 60.0, "exponent": 1.1, "peak_gb_50000": 4.0}


def build_cohort(root: Path) -> Path:
    """The demo's synthetic cohort (config.yaml's synthetic.spec), generated once."""
    sys.path.insert(0, str(REPO / "scripts"))
    from radstudy.synth import generate_cohort

    cohort = root / "cohort"
    if not (cohort / "cases.tsv").is_file():
        spec = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]["spec"]
        generate_cohort(cohort, spec)
        # the inputs an hour old: older than the outputs create_outputs stamps
        old = time.time() - 3600
        for p in cohort.rglob("*"):
            os.utime(p, (old, old))
    return cohort


def repeated_sheet(sheet: pd.DataFrame, n: int) -> pd.DataFrame:
    """The sheet's rows repeated to ``n`` rows; copy i's case ids end in ``x{i}``."""
    copies = -(-n // len(sheet))
    return pd.concat(
        [sheet.assign(case_id=sheet["case_id"] + f"x{i}") for i in range(copies)],
        ignore_index=True,
    ).head(n)


def make_workdir(root: Path, cohort: Path, n: int) -> Path:
    """Workdir of ``n`` cases: the demo config on a repeated sheet beside the images."""
    wd = root / f"n{n}"
    wd.mkdir(parents=True, exist_ok=True)
    sheet = pd.read_csv(cohort / "cases.tsv", sep="\t", dtype=str, keep_default_na=False)
    path = cohort / f"cases_{n}.tsv"
    if not path.is_file():
        repeated_sheet(sheet, n).to_csv(path, sep="\t", index=False)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["cohort"]["sheet"] = str(path)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return wd


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, stdout) of one command, which must succeed."""
    stats = log.with_suffix(".time")
    t = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(stats), *cmd],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - t
    text = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    peak_kb = float(stats.read_text().split()[-1])
    return seconds, peak_kb / 1024**2, text


def job_stats(text: str) -> list[tuple[str, int]]:
    """(rule, jobs) rows of the dry run's "Job stats" table, in its order (the DAG's
    topological order), without the total."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            inside, rows = True, []
        elif inside:
            m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
            if m and m.group(1) == "total":
                inside = False
            elif m:
                rows.append((m.group(1), int(m.group(2))))
    return rows


def planned_outputs(text: str) -> dict[str, list[str]]:
    """rule -> every output file its jobs print in the dry run."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in text.splitlines():
        if m := re.match(r"^\s*(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+output: (.*)$", line)) and rule:
            out.setdefault(rule, []).extend(m.group(1).split(", "))
    return out


# outputs that are folders: the per-batch stages' (a subfolder per case), nnU-Net's,
# the report's figures
FOLDERS = re.compile(
    r"(/batch\d+/(prepared|slic|normalised)|/predictions/[^/]+/batch\d+"
    r"|/nnunet/[^/]+/(raw|preprocessed|model)|/report/figures)$"
)


def create_outputs(wd: Path, text: str) -> int:
    """Every planned output as an empty file (a folder where the rule writes one),
    each stage one second newer than the stage before it."""
    order = [r for r, _ in job_stats(text)]
    outputs = planned_outputs(text)
    stamp = time.time() - len(order) - 10
    n = 0
    for rank, rule in enumerate(order):
        for rel in outputs.get(rule, []):
            p = wd / rel
            if FOLDERS.search(rel):
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            os.utime(p, (stamp + rank, stamp + rank))
            n += 1
    return n


def measure(root: Path, cohort: Path, n: int) -> dict:
    wd = make_workdir(root, cohort, n)
    dry_s, dry_gb, text = timed(snakemake_cmd(wd, "-n", "--cores", "2"), wd, wd / "dry.log")
    stats = job_stats(text)
    files = create_outputs(wd, text)
    noop_s, noop_gb, again = timed(snakemake_cmd(wd, "-n", "--cores", "2"), wd, wd / "noop.log")
    if "Nothing to be done" not in again:
        raise RuntimeError(f"no-op rerun of {n} cases plans jobs:\n{again[-3000:]}")
    return {
        "cases": n,
        "jobs": sum(j for _, j in stats),
        "dry_s": dry_s,
        "dry_gb": dry_gb,
        "noop_s": noop_s,
        "noop_gb": noop_gb,
        "files": files,
    }


def exponent(rows: list[dict], key: str) -> float:
    """Least-squares slope of log(key) on log(cases)."""
    xs = [math.log(r["cases"]) for r in rows]
    ys = [math.log(r[key]) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def profile(root: Path, cohort: Path, n: int) -> str:
    """The 25 costliest calls (cumulative) of the dry run of ``n`` cases."""
    import pstats

    wd = make_workdir(root, cohort, n)
    prof = wd / "dry.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof)]
    timed([*cmd, *snakemake_cmd(wd, "-n", "--cores", "2")], wd, wd / "profile.log")
    buf = tempfile.SpooledTemporaryFile(mode="w+")
    pstats.Stats(str(prof), stream=buf).sort_stats("cumulative").print_stats(25)
    buf.seek(0)
    return buf.read()


def section(rows: list[dict], cmd: str) -> str:
    by_n = {r["cases"]: r for r in rows}
    lines = [
        f"{TITLE} ({date.today().isoformat()})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}. `{cmd}`.",
        "",
        "The demo config (2 sequences, readers R1 R2 R3 R1r + organ mask, deep features, "
        "5 models) on its 60-case synthetic sheet repeated to N cases (4 centers, "
        "features.batch_size 16); `snakemake -n --cores 2` as a user types it, and the "
        "same again once every planned output exists (no-op rerun: nothing to do). "
        "Wall time and peak RSS from `/usr/bin/time`.",
        "",
        "| cases | jobs | dry run | peak memory | no-op rerun | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cases']:,} | {r['jobs']:,} | {r['dry_s']:.1f} s | {r['dry_gb']:.2f} GB "
            f"| {r['noop_s']:.1f} s | {r['noop_gb']:.2f} GB |"
        )
    lines += ["", "| measurement | value | goal |", "|---|---|---|"]
    if len(rows) >= 2:
        lines.append(f"| exponent, dry run | {exponent(rows, 'dry_s'):.2f} | <= 1.1 |")
        lines.append(f"| exponent, no-op rerun | {exponent(rows, 'noop_s'):.2f} | <= 1.1 |")
    if 20000 in by_n:
        lines.append(f"| dry run, 20,000 cases | {by_n[20000]['dry_s']:.1f} s | < 60 s |")
    if 50000 in by_n:
        lines.append(f"| peak memory, 50,000 cases | {by_n[50000]['dry_gb']:.2f} GB | < 4 GB |")
    else:
        lines.append("| peak memory, 50,000 cases | not run | < 4 GB |")
    return "\n".join(lines) + "\n"


def replace_section(doc: str, new: str) -> str:
    """``doc`` with the section under TITLE replaced by ``new`` (appended if absent)."""
    start = doc.find(TITLE)
    if start < 0:
        return doc.rstrip("\n") + "\n\n" + new
    nxt = doc.find("\n## ", start + len(TITLE))
    tail = doc[nxt + 1 :] if nxt >= 0 else ""
    return doc[:start] + new + ("\n" + tail if tail else "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 50000])
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", type=int, metavar="N")
    args = ap.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="radstudy-dag-"))
    cohort = build_cohort(root)
    if args.profile:
        print(profile(root, cohort, args.profile))
    rows = []
    for n in sorted(args.sizes):
        rows.append(measure(root, cohort, n))
        print(rows[-1], flush=True)
    cmd = "python bench/bench_dag.py --sizes " + " ".join(str(n) for n in sorted(args.sizes))
    text = section(rows, cmd)
    print(text)
    if not args.no_write:
        args.out.write_text(replace_section(args.out.read_text(), text))


if __name__ == "__main__":
    main()
