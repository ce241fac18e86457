"""The default models on the published feature tables, in-process: fixed vs search.

  python bench/bench_search.py [--tables NAME ...] [--folds 5] [--seed 0]
                               [--jobs 2] [--out bench/RESULTS.md]

The protocol of the model-search benchmark: every table of tests/data/feature_tables,
the same stratified 5-fold outer CV (fixed seed) for every model, each model's whole
learned chain refit per outer fold exactly as the workflow builds it
(``radstudy.stages.build_pipeline`` on the schema's defaults: gap filling, the
default selection steps, the classifier; or the nested search):

- ``logistic``, ``random_forest``, ``svm``: the fixed classifiers with the default
  selection (a model spec naming only ``classifier.name``);
- ``search``: the default search's best configuration alone (``ensemble: none``);
- ``search + ensemble``: the default model (``auto``: the search with its default
  average of the best configurations of five model families).

The two search columns come from one search per fold (the best configuration is the
ensemble's first member, refit on the same rows), so they differ only in what is
returned. Outer AUC = mean of the per-fold AUCs; next to it the collection's
reference values (README of that folder: a non-nested best-of-search, optimistic,
and TabPFN). Seconds: one outer fold's search (its inner searches included) on one
core, mean over folds; a table runs on one core, ``--jobs`` tables side by side.

The section "Model search on the feature tables" of RESULTS.md is replaced.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

from bench_presets import write_section  # noqa: E402
from bench_tables import TABLES, reference_aucs  # noqa: E402

TITLE = "## Model search on the feature tables"
FIXED = ("logistic", "random_forest", "svm")


def load(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (``table__`` columns, as the workflow names them) and the 0/1 target."""
    from radstudy.tables import read_feature_table

    df = read_feature_table(TABLES / f"{name}.csv.gz", id_column="ID")
    y = df.pop("Target").str.lower().map({"1": 1, "0": 0, "true": 1, "false": 0})
    X = df.apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    X.columns = [f"table__{c}" for c in X.columns]
    return X, y.to_numpy(int)


def pipelines(seed: int) -> dict:
    from radstudy.config import with_defaults
    from radstudy.stages import build_pipeline

    auto = {"groups": ["radiomics", "clinical"], "search": {}}  # = the default model
    models = {
        "auto": auto,
        **{m: {"groups": auto["groups"], "classifier": {"name": m}} for m in FIXED},
    }
    cfg = with_defaults(
        {
            "cohort": {"sheet": "t.csv", "features_table": "t.csv", "center_column": ""},
            "endpoints": {"target": {"type": "binary", "column": "Target"}},
            "models": {"target": models},
        }
    )
    ep = cfg["endpoints"]["target"]
    return {m: build_pipeline(s, cfg, ep, None, seed) for m, s in cfg["models"]["target"].items()}


def run_table(name: str, folds: int, seed: int) -> dict:
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    warnings.filterwarnings("ignore")
    X, y = load(name)
    X.insert(0, "center", "A")
    aucs: dict[str, list[float]] = {}
    secs: list[float] = []
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        for tr, te in cv.split(X, y):
            for model, pipe in pipelines(seed).items():
                t0 = time.perf_counter()
                fitted = clone(pipe).fit(X.iloc[tr], y[tr])
                if model == "auto":
                    secs.append(time.perf_counter() - t0)
                    search = fitted.steps[-1][1]
                    pre = fitted[:-1].transform(X.iloc[te])
                    pre = np.asarray(pre, float)[:, search.columns_]  # its decorrelated input
                    best = search.members_[0].predict_proba(pre)[:, 1]
                    aucs.setdefault("search", []).append(roc_auc_score(y[te], best))
                    model = "search + ensemble"
                p = fitted.predict_proba(X.iloc[te])[:, 1]
                aucs.setdefault(model, []).append(roc_auc_score(y[te], p))
    row = {"table": name, "n": len(y), "p": X.shape[1] - 1}
    row.update({m: float(np.mean(aucs[m])) for m in (*FIXED, "search", "search + ensemble")})
    row["search s per fold"] = float(np.mean(secs))
    print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()), flush=True)  # fmt: skip
    return row


def main() -> None:
    from joblib import Parallel, delayed

    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", nargs="*", default=None, help="names (default: all ten)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    names = args.tables or sorted(p.name.removesuffix(".csv.gz") for p in TABLES.glob("*.csv.gz"))
    t0 = time.perf_counter()
    rows = Parallel(n_jobs=args.jobs)(delayed(run_table)(n, args.folds, args.seed) for n in names)
    wall = time.perf_counter() - t0
    ref = reference_aucs()
    df = pd.DataFrame(rows).set_index("table")
    df["search (ref.)"] = ref["search"].reindex(df.index)
    df["tabpfn32 (ref.)"] = ref["tabpfn32"].reindex(df.index)
    df.loc["mean"] = df.mean()
    cols = ["n", "p", *FIXED, "search", "search + ensemble", "search s per fold",
            "search (ref.)", "tabpfn32 (ref.)"]  # fmt: skip
    lines = ["| table | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in df[cols].iterrows():
        cells = [f"{r[c]:.0f}" if c in ("n", "p", "search s per fold") else f"{r[c]:.3f}"
                 for c in cols]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    m = df.loc["mean"]
    best_fixed = max(FIXED, key=lambda c: m[c])
    body = [
        TITLE,
        "",
        f"`python bench/bench_search.py` on {platform.node()} ({args.jobs} tables side by "
        f"side, one core each), {time.strftime('%Y-%m-%d')}, {wall:.0f} s in all. "
        f"Stratified {args.folds}-fold outer CV (seed {args.seed}), the whole chain refit "
        "per fold; outer AUC = mean of the per-fold AUCs. Fixed models: the schema's "
        "default selection + that classifier; search: the default `auto` model's best "
        "configuration alone; search + ensemble: the default `auto` model (the best configurations "
        "of five model families, averaged). References from tests/data/feature_tables/README.md (10-fold pooled; "
        "search (ref.) is non-nested, picked on the CV that reports it).",
        "",
        *lines,
        "",
        f"Mean outer AUC: search + ensemble {m['search + ensemble']:.3f}, search "
        f"{m['search']:.3f}, best fixed model ({best_fixed}) {m[best_fixed]:.3f} "
        f"(difference {m['search + ensemble'] - m[best_fixed]:+.3f}); slowest table's search "
        f"{df['search s per fold'].drop('mean').max():.0f} s per outer fold.",
        "",
    ]
    write_section(Path(args.out), "\n".join(body), TITLE)
    print("\n".join(body))


if __name__ == "__main__":
    main()
