"""Wall time of every study preset at its study's real size, and of the demo.

  python bench/bench_presets.py [--only NAME ...] [--scale F] [--cores N]
                                [--workdir DIR] [--out bench/RESULTS.md] [--write]

Targets: ``demo`` (the repository's config.yaml, run WITHOUT --configfile, exactly
as ``make demo`` does) and every ``studies/NAME.yaml`` (``--configfile`` a copy of
it in the workdir). Each runs in a fresh workdir (``--workdir``/NAME) with its
cohort.sheet unchanged (a relative path, so the synthetic cohort lands in the
workdir). Two timings per target, then their sum:
  - generation: ``radstudy.synth.generate_cohort`` on the config's
    ``synthetic.spec``, into the sheet's folder, called here (in a full run the
    workflow does it at parse time; here the sheet then exists and it is skipped);
  - run: ``snakemake --snakefile REPO/Snakefile --directory WD --cores 2``, whole.
Goals (on the sum, as a user's run includes the generation): presets <= 600 s,
the demo <= 480 s. Where the time goes: per-job durations from the run's
Snakemake log (start and "Finished" timestamps, 1 s resolution), summed per rule.

``--scale F`` multiplies every synthetic center's n by F (at least 4 cases per
center) for a quick check; then nothing is written to RESULTS.md unless
``--write`` is given, and the output says the scale is reduced. With ``--write``
(or at scale 1) the section "Study presets at their real size" of RESULTS.md is
replaced (the other sections are kept); it holds the targets of this run only.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TITLE = "## Study presets at their real size"
GOAL_S = {"demo": 480.0}  # every preset: PRESET_GOAL_S
PRESET_GOAL_S = 600.0
MIN_N = 4  # cases per center at a reduced --scale

# --- Snakemake log -> per-job durations ------------------------------------------------

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\]\s*$")
_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):\s*$")
_JOBID = re.compile(r"^\s+jobid: (\d+)\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)(?: \(Rule: (\S+)\))?")
_ERROR = re.compile(r"^Error in rule (\S+):\s*$")


@dataclass
class Job:
    jobid: int
    rule: str
    start: datetime
    end: datetime | None = None  # "Finished" (or the error, if failed)
    wildcards: str = ""
    failed: bool = False

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.end else float("nan")


def parse_log(text: str) -> list[Job]:
    """Jobs of one Snakemake log, in start order: a job block is a timestamp line,
    ``rule NAME:`` / ``localrule NAME:`` / ``checkpoint NAME:``, then indented
    ``jobid: N`` (and ``wildcards: ...``); its end is a timestamp line followed by
    ``Finished jobid: N (Rule: NAME)``. A failed job's block is a timestamp line,
    ``Error in rule NAME:`` and ``jobid: N``: it gets ``failed`` and that end. Jobs
    that never ended keep ``end=None``."""
    jobs: dict[int, Job] = {}
    stamp: datetime | None = None
    pending: tuple[str, datetime] | None = None  # rule block seen, jobid not yet
    current: Job | None = None  # block whose wildcards line may follow
    error: str | None = None  # error block seen, jobid not yet
    for line in text.splitlines():
        if m := _STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            pending = current = error = None
        elif (m := _START.match(line)) and stamp is not None:
            pending, current, error = (m.group(1), stamp), None, None
        elif (m := _ERROR.match(line)) and stamp is not None:
            pending, current, error = None, None, m.group(1)
        elif (m := _JOBID.match(line)) and error is not None:
            job = jobs.get(int(m.group(1)))
            if job is not None and job.rule == error and job.end is None:
                job.end, job.failed = stamp, True
            error = None
        elif (m := _JOBID.match(line)) and pending is not None:
            jobid = int(m.group(1))
            current = jobs[jobid] = Job(jobid, pending[0], pending[1])  # a retry restarts it
            pending = None
        elif (m := _WILDCARDS.match(line)) and current is not None:
            current.wildcards = m.group(1).strip()
        elif (m := _FINISHED.match(line)) and stamp is not None:
            job = jobs.get(int(m.group(1)))
            if job is not None and (m.group(2) in (None, job.rule)):
                job.end = stamp
            pending = current = error = None
    return sorted(jobs.values(), key=lambda j: (j.start, j.jobid))


def by_rule(jobs: list[Job]) -> list[dict]:
    """Finished jobs summed per rule, most job time first: jobs, seconds, share of
    all finished jobs' time, and the longest job (seconds, jobid, wildcards)."""
    done = [j for j in jobs if j.end is not None and not j.failed]
    total = sum(j.seconds for j in done)
    rules: dict[str, list[Job]] = {}
    for j in done:
        rules.setdefault(j.rule, []).append(j)
    rows = []
    for rule, js in rules.items():
        secs = sum(j.seconds for j in js)
        longest = max(js, key=lambda j: (j.seconds, -j.jobid))
        rows.append(
            {
                "rule": rule,
                "jobs": len(js),
                "seconds": secs,
                "share": secs / total if total > 0 else 0.0,
                "longest": longest.seconds,
                "longest_jobid": longest.jobid,
                "longest_wildcards": longest.wildcards,
            }
        )
    return sorted(rows, key=lambda r: (-r["seconds"], r["rule"]))


# --- targets -------------------------------------------------------------------------


def targets() -> dict[str, Path]:
    """``demo`` (config.yaml) then the presets, by name."""
    out = {"demo": REPO / "config.yaml"}
    out.update({p.stem: p for p in sorted((REPO / "studies").glob("*.yaml"))})
    return out


def scaled_spec(spec: dict, scale: float) -> dict:
    """The spec with its centers (the generator's defaults if it names none) merged
    in, every center's n scaled (at least MIN_N) unless ``scale`` is 1."""
    from radstudy.synth import DEFAULTS

    out = copy.deepcopy(spec or {})
    out["centers"] = copy.deepcopy(out.get("centers") or DEFAULTS["centers"])
    if scale != 1:
        for c in out["centers"]:
            c["n"] = max(MIN_N, round(int(c["n"]) * scale))
    return out


def snakemake_cmd(name: str, wd: Path, cores: int) -> list[str]:
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd)]
    if name != "demo":  # the demo: the Snakefile's own config.yaml, as `make demo`
        cmd += ["--configfile", str(wd / "config.yaml")]
    return [*cmd, "--cores", str(cores)]


def run_target(name: str, src: Path, root: Path, scale: float, cores: int) -> dict:
    from radstudy.synth import generate_cohort

    wd = root / name
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    cfg = yaml.safe_load(src.read_text())
    sheet = Path(cfg["cohort"]["sheet"])
    if sheet.is_absolute() or not cfg.get("synthetic", {}).get("enabled"):
        raise SystemExit(f"{name}: needs a synthetic cohort with a relative cohort.sheet")
    spec = scaled_spec(cfg["synthetic"].get("spec") or {}, scale)
    if scale == 1:
        shutil.copy2(src, wd / "config.yaml")  # byte for byte
    else:
        cfg["synthetic"]["spec"] = spec
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = {
        "name": name,
        "config": src.relative_to(REPO),
        "centers": [(c["name"], int(c["n"]), c["role"]) for c in spec["centers"]],
        "goal": GOAL_S.get(name, PRESET_GOAL_S),
    }
    print(f"[{name}] generating {sum(n for _, n, _ in res['centers'])} cases ...", flush=True)
    t = time.perf_counter()
    generate_cohort(wd / sheet.parent, spec)
    res["generation"] = time.perf_counter() - t
    cmd = snakemake_cmd(name, wd, cores)
    res["cmd"] = shlex.join(cmd)
    print(f"[{name}] generation {res['generation']:.1f} s; {res['cmd']}", flush=True)
    out = wd / "snakemake.out"
    t = time.perf_counter()
    with out.open("w") as fh:
        rc = subprocess.run(cmd, cwd=wd, stdout=fh, stderr=subprocess.STDOUT).returncode
    res["run"] = time.perf_counter() - t
    res["rc"] = rc
    res["total"] = res["generation"] + res["run"]
    logs = sorted((wd / ".snakemake" / "log").glob("*.snakemake.log"))
    jobs = parse_log(logs[-1].read_text()) if logs else []
    res["jobs"] = jobs
    res["rules"] = by_rule(jobs)
    res["log"] = logs[-1] if logs else None
    status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {out})"
    print(f"[{name}] run {res['run']:.1f} s, total {res['total']:.1f} s: {status}", flush=True)
    if rc != 0:
        print("".join(out.read_text().splitlines(keepends=True)[-30:]), flush=True)
    return res


# --- report --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def snakemake_version() -> str:
    out = subprocess.run([str(SNAKEMAKE), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s >= 100 else f"{s:.1f} s"


def summary_rows(results: list[dict]) -> list[str]:
    rows = [
        "| target | config | cases per center | jobs | generation | run | total | goal | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        centers = ", ".join(f"{c} {n} ({role})" for c, n, role in r["centers"])
        done = sum(1 for j in r["jobs"] if j.end is not None and not j.failed)
        bad = len(r["jobs"]) - done
        jobs = f"{done}" + (f" (+{bad} not finished)" if bad else "")
        met = "FAILED" if r["rc"] else ("yes" if r["total"] <= r["goal"] else "**no**")
        rows.append(
            f"| {r['name']} | `{r['config']}` | {centers} | {jobs} | {fmt_s(r['generation'])} "
            f"| {fmt_s(r['run'])} | {fmt_s(r['total'])} | <= {r['goal']:.0f} s | {met} |"
        )
    return rows


def rule_rows(r: dict) -> list[str]:
    busy = sum(x["seconds"] for x in r["rules"])
    rows = [
        f"**{r['name']}**: {busy:.0f} job-seconds in {fmt_s(r['run'])} of run wall time "
        f"({busy / r['run']:.2f} cores busy on average).",
        "",
        "| rule | jobs | job time | share | longest job |",
        "|---|---|---|---|---|",
    ]
    for x in r["rules"]:
        wc = f" ({x['longest_wildcards']})" if x["longest_wildcards"] else ""
        rows.append(
            f"| {x['rule']} | {x['jobs']} | {x['seconds']:.0f} s | {100 * x['share']:.1f} % "
            f"| {x['longest']:.0f} s{wc} |"
        )
    bad = [j for j in r["jobs"] if j.failed or j.end is None]
    if bad:
        rows += [
            "",
            "Not finished (not counted above): "
            + "; ".join(
                f"{j.rule} job {j.jobid}"
                + (f" ({j.wildcards})" if j.wildcards else "")
                + (f" failed after {j.seconds:.0f} s" if j.failed else " never ended")
                for j in bad
            )
            + ".",
        ]
    return rows


def write_section(path: Path, body: str, title: str = TITLE) -> None:
    """Replace the section starting with ``title`` (this benchmark's, by default) of
    RESULTS.md in place (append it if absent), keep the others."""
    text = path.read_text() if path.exists() else "# radstudy benchmarks\n"
    head, *sections = text.split("\n## ")
    parts = [head.strip()]
    found = False
    for s in sections:
        if ("## " + s).startswith(title):
            if not found:
                parts.append(body.strip())
            found = True
        else:
            parts.append("## " + s.strip())
    if not found:
        parts.append(body.strip())
    path.write_text("\n\n".join(parts) + "\n")


def main() -> None:
    names = targets()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(names), metavar="NAME",
                    help=f"targets (default: all): {', '.join(names)}")  # fmt: skip
    ap.add_argument("--scale", type=float, default=1.0,
                    help=f"multiply every center's n (at least {MIN_N}); 1 = real size")  # fmt: skip
    ap.add_argument("--cores", type=int, default=2, help="snakemake --cores (goal: 2)")
    ap.add_argument("--workdir", default="/tmp/radstudy-bench-presets")
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--write", action="store_true", help="write RESULTS.md at --scale != 1 too")
    args = ap.parse_args()
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    sys.path.insert(0, str(REPO / "scripts"))
    reduced = args.scale != 1
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    started = datetime.now()
    load0 = os.getloadavg()
    if reduced:
        print(f"REDUCED SCALE {args.scale:g}: NOT the studies' real size", flush=True)
    results = [run_target(n, names[n], root, args.scale, args.cores) for n in (args.only or names)]
    load1 = os.getloadavg()
    invocation = shlex.join(["python", "bench/bench_presets.py", *sys.argv[1:]])
    lines = [
        f"{TITLE} ({started:%Y-%m-%d})",
        "",
        *(
            [
                f"**Reduced scale {args.scale:g}: every center's n x {args.scale:g} (at least "
                f"{MIN_N}), NOT the studies' real size.**",
                "",
            ]
            if reduced
            else []
        ),
        f"Machine: {len(os.sched_getaffinity(0))} cores available (nproc; {os.cpu_count()} "
        f"online), {cpu_model()}, {platform.machine()}, Python {platform.python_version()}, "
        f"Snakemake {snakemake_version()}; load average {load0[0]:.2f} at start, "
        f"{load1[0]:.2f} at end (the machine is shared). `{invocation}` "
        f"(started {started:%Y-%m-%d %H:%M}).",
        "",
        *summary_rows(results),
        "",
        "Generation: `radstudy.synth.generate_cohort` on the config's `synthetic.spec`, into",
        "the sheet's folder in the workdir (a full run does this at parse time). Run: the",
        "whole Snakemake call below. Goal on the total (generation + run): presets",
        f"<= {PRESET_GOAL_S:.0f} s, the demo (`make demo`) <= {GOAL_S['demo']:.0f} s. Commands:",
        "",
        *[f"- {r['name']}: `{r['cmd']}`" for r in results],
        "",
        "Where the time goes: per-job durations from the run's Snakemake log (start and",
        "`Finished` timestamps, 1 s resolution), summed per rule; share = of all job time;",
        "with 2 cores, job time exceeds wall time when jobs run side by side.",
        "",
    ]
    for r in results:
        lines += [*rule_rows(r), ""]
    body = "\n".join(lines).rstrip() + "\n"
    print()
    print(body)
    if reduced and not args.write:
        print(f"(reduced scale {args.scale:g}: {args.out} not written; --write to force)")
    else:
        write_section(Path(args.out), body)
        print(f"written: section '{TITLE[3:]}' of {args.out}")
    if any(r["rc"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
