"""The self-contained HTML report: tables and figures of one run, for clinicians.

A summary opens it (radstudy.report_summary: cohorts, the headline model per endpoint,
a forest plot, the checks in plain words); the sections follow, each left out when
its stage has nothing to show. Figures are small multiples (radstudy.report_figures),
inlined as base64 PNG, so the report is one file that can be mailed or archived, and
also written as PNG + SVG under results/report/figures/. Tables (radstudy.report_format)
fit the page, sort, fold when long and download as TSV; Table 1 comes from tableone
(radstudy.report_table1). The TRIPOD+AI and CLEAR checklists close it
(radstudy.report_checklists). Every section reads the workflow's own outputs; nothing
is recomputed that the workflow already wrote. Printed (make report-pdf), each section
starts a page and folded tables unfold.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from radstudy import __version__  # noqa: E402
from radstudy.config import segmentation_label  # noqa: E402
from radstudy.qcrecords import read_qc_pieces  # noqa: E402
from radstudy.report_checklists import checklists_section  # noqa: E402
from radstudy.report_checklists import facts as checklist_facts  # noqa: E402
from radstudy.report_figures import (  # noqa: E402
    MAX_SERIES,
    chunks,
    cohort_title,
    curve_panels,
    fig_html,
    figure_dir,
    km_panels,
    legend_right,
    model_colors,
    png_html,
    top_bars,
)
from radstudy.report_format import SORT_JS, fmt_ci, sig, table_html  # noqa: E402
from radstudy.report_summary import headline_model, summary_block  # noqa: E402
from radstudy.report_table1 import flatten  # noqa: E402
from radstudy.report_table1 import table_one as tableone_table  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["fig_html", "png_html", "table_html", "render_report"]

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:3px solid #2b6cb0}h2{color:#2b6cb0;border-bottom:1px solid #ccd;margin-top:2em}
.tbl{max-width:100%;overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:.88em}
th,td{border:1px solid #ccd;padding:3px 7px;text-align:right;vertical-align:top;
overflow-wrap:break-word;max-width:28em}
th{background:#eef3fa;cursor:pointer;position:sticky;top:0}
th[data-dir=asc]::after{content:" \\25B4"}th[data-dir=desc]::after{content:" \\25BE"}
td:first-child,th:first-child{text-align:left}
a.tsv{display:block;width:max-content;font-size:.75em;color:#2b6cb0;margin:-.3em 0 .6em .3em}
figure{display:inline-block;margin:.4em;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555;max-width:60em}
details{margin:.4em 0}summary{cursor:pointer;color:#2b6cb0}
details.model{border-left:3px solid #ccd;padding-left:.8em;margin:1em 0}
details.model>summary{font-size:1.1em;padding:.3em 0}details.model>summary h3{display:inline}
.note{color:#555;font-size:.9em}.ok{color:#2f855a}.warn{color:#c05621}
ul.checks{list-style:none;padding-left:0}ul.checks li{margin:.2em 0}
#summary{border:1px solid #ccd;border-radius:6px;padding:0 1em 1em;background:#fafcff}
#summary h2{margin-top:.6em}
.alarm{border:2px solid #c53030;background:#fff5f5;color:#742a2a;padding:.5em 1em;margin:1em 0}
nav{display:flex;flex-wrap:wrap;gap:.3em 1em}
table.checklist td,table.checklist th{text-align:left}table.checklist tr.open td:last-child{color:#777}
@media print{
body{max-width:none;margin:0;font-size:10pt}
section{break-before:page}#summary{break-before:auto}
nav,a.tsv{display:none}
details::details-content{content-visibility:visible;display:contents}
figure,tr,.alarm{break-inside:avoid}h2,h3,h4{break-after:avoid}
th{position:static}.tbl{overflow:visible}
}
"""

#: printing (make report-pdf, the browser's print) shows folded tables and models too
PRINT_JS = (
    "addEventListener('beforeprint',()=>document.querySelectorAll('details')"
    ".forEach(d=>d.open=true));"
)


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _read_tsv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"case_id": str, "center": str})


# --------------------------------------------------------------------------- sections
def cohort_flow(cases: pd.DataFrame, excluded: pd.DataFrame) -> str:
    """Included/excluded counts per center and split, and every exclusion reason."""
    counts = pd.crosstab(cases["center"], cases["split"], margins=True, margins_name="total")
    ex = (
        excluded.groupby(["center", "stage"]).size().unstack(fill_value=0)
        if len(excluded)
        else None
    )
    body = "<h3>Included cases by center and split</h3>" + table_html(counts, index=True)
    body += "<h3>Excluded cases</h3>"
    if ex is not None:
        body += table_html(ex, index=True)
    body += table_html(excluded.sort_values(["center", "case_id"]))
    return body


def table_one(
    cases: pd.DataFrame,
    clinical: list[str],
    endpoints: dict | None = None,
    labels: dict | None = None,
) -> str:
    """Table 1 by tableone: one table by split, one by each endpoint's outcome (binary:
    its label; survival: its event), levels labelled from ``labels``
    (report.clinical_labels), skewed variables as median [Q1,Q3], missing counts and
    p-values where a test fits."""
    groupings = [("split", "split", None)]
    for ep, spec in (endpoints or {}).items():
        col = spec["column"] if spec["type"] == "binary" else spec["event"]
        if col in cases.columns and col != "split":
            names = (
                {"0": "no event", "1": "event"}
                if spec["type"] == "survival"
                else {"0": f"{col} 0", "1": f"{col} 1"}
            )
            groupings.append((f"outcome {ep} ({col})", col, names))
    body = ""
    for title, col, names in groupings:
        t = tableone_table(cases, clinical, col, labels, names)
        if t is None:
            continue
        body += f"<h3>By {html.escape(title)}</h3>" + table_html(
            flatten(t), name=f"table1 by {title}", formatted=True, collapse=40
        )
    if not body:
        return ""
    return body + (
        "<p class='note'>n (%) for categorical variables, mean (SD) for roughly "
        "symmetric and median [Q1,Q3] for skewed continuous ones; Missing counts the "
        "cases without a value; p-values from the test named in Test (tableone: "
        "chi-square or Fisher's exact for categories, Welch's t-test / ANOVA or "
        "Kruskal-Wallis for the continuous ones), only where every group has 2+ cases.</p>"
    )


def normalisation_figures(records: list[list], centers: dict[str, str]) -> str:
    """Per sequence: ROI intensity quantile curves of every case before and after
    normalisation, coloured by center (curves that collapse = centers made comparable).
    ``records``: [case, seq, qc, normalisation] (radstudy.qcrecords.read_qc_pieces)."""
    rows = [(seq, q) for _, seq, _, q in records if q is not None]  # None: a marker
    body = ""
    for seq in sorted({s for s, _ in rows}):
        fig, axes = plt.subplots(1, 2, figsize=(8.5, 3), layout="constrained")
        colors: dict[str, str] = {}
        for s, q in rows:
            if s != seq:
                continue
            center = centers.get(q["case_id"], "?")
            color = colors.setdefault(center, f"C{len(colors) % 10}")
            for ax, key in zip(axes, ("roi_before", "roi_after"), strict=True):
                ax.plot(q["quantiles"], q[key], color=color, lw=0.7, alpha=0.7)
        for ax, title in zip(axes, ("before", "after"), strict=True):
            ax.set_title(f"ROI intensities {title} normalisation", fontsize=9)
            ax.set_xlabel("percentile")
        axes[0].set_ylabel("intensity")
        handles = [plt.Line2D([], [], color=c) for c in colors.values()]
        axes[1].legend(handles, list(colors), title="center", fontsize=7, frameon=False,
                       loc="upper left", bbox_to_anchor=(1.02, 1))  # fmt: skip
        body += fig_html(
            fig,
            f"{seq}: ROI intensity percentiles per case, by center",
            alt=f"{seq}: per-case ROI intensity percentile curves before and after "
            "normalisation, coloured by center",
            name=f"normalisation_{seq}",
        )
    return body


def qc_section(records: list[list]) -> str:
    """Per-case preprocessing record (and the N4 bias-field figure) from [case, seq,
    qc, normalisation] records (radstudy.qcrecords.read_qc_pieces); a None qc is an
    exclusion marker: the case is listed under exclusions."""
    rows, figs = [], ""
    for case, seq, q, _ in records:
        if q is None:
            continue
        rows.append(
            {
                "case_id": case,
                "seq": seq,
                "spacing_in": "x".join(f"{s:.2g}" for s in q.get("input_spacing", [])),
                "spacing_out": "x".join(f"{s:.2g}" for s in q.get("output_spacing", [])),
                "bias_min": (q.get("bias_field") or {}).get("min"),
                "bias_max": (q.get("bias_field") or {}).get("max"),
            }
        )
    df = pd.DataFrame(rows)
    if not len(df):
        return ""
    # the bias-field figure only where N4 ran (not for CT, not with preprocess.n4 off)
    ranges = (
        {
            seq: (part["bias_max"].astype(float) - part["bias_min"].astype(float)).dropna()
            for seq, part in df.groupby("seq")
        }
        if len(df)
        else {}
    )
    ranges = {seq: r for seq, r in ranges.items() if len(r)}
    if ranges:
        fig, ax = plt.subplots(figsize=(5, 3))
        for seq, r in ranges.items():
            ax.hist(r, alpha=0.6, label=seq, bins=15)
        ax.set_xlabel("N4 bias field range (max - min)")
        ax.set_ylabel("cases")
        legend_right(ax, title="sequence")
        figs = fig_html(fig, "Range of the estimated bias field per case (MRI)", name="n4_bias")
    return (
        figs
        + "<h3>Per-case preprocessing record</h3>"
        + table_html(df, name="preprocessing record", collapse=0)
    )


def segmentation_section(paths: list[str]) -> str:
    """Dice matrix, volume agreement and entropy (core vs rim) per sequence."""
    body = ""
    for p in paths:
        folder = Path(p).parent
        body += f"<h3>{html.escape(folder.name)}</h3>"
        body += "<h4>Mean Dice (95% CI)</h4>" + table_html(pd.read_csv(p, sep="\t"))
        body += "<h4>Volume agreement vs reference</h4>" + table_html(
            pd.read_csv(folder / "volume_summary.tsv", sep="\t")
        )
        if (folder / "overlay.png").is_file():
            body += png_html(
                folder / "overlay.png",
                f"{folder.name}: best, median and worst case by Dice vs the reference "
                "(contour of every mask source)",
                name=f"overlay_{folder.name}",
            )
        ent = pd.read_csv(folder / "entropy.tsv", sep="\t")
        if len(ent):
            summ = ent.groupby("method")[["entropy_core", "entropy_rim"]].mean().reset_index()
            body += "<h4>Entropy of the soft output: core vs rim (mean)</h4>" + table_html(summ)
    return body


def icc_section(icc: pd.DataFrame, threshold: float) -> str:
    if not len(icc):
        return ""
    cats = icc.groupby(["kind", "category"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(5, 3))
    for kind, part in icc.groupby("kind"):
        ax.hist(part["icc"].dropna().clip(-0.2, 1), bins=30, alpha=0.6, label=kind)
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set_xlabel("ICC")
    ax.set_ylabel("features")
    legend_right(ax, title="ICC of")
    return fig_html(fig, f"ICC distribution (threshold {threshold})", name="icc") + table_html(
        cats, index=True, name="icc categories"
    )


def _center_signal(pred: dict) -> str:
    """Plain words on how well the centers can still be told apart after ComBat."""
    lin, rf = pred.get("linear", {}), pred.get("forest", {})
    rows = pd.DataFrame(
        [
            ["linear (logistic regression)", lin.get("before"), lin.get("after")],
            ["random forest", rf.get("before"), rf.get("after")],
        ],
        columns=["model predicting the center", "AUC before", "AUC after"],
    )
    body = (
        "<p>Center predictability: cross-validated AUC of predicting the center from "
        "the features on the training rows (0.5 = centers indistinguishable).</p>"
        + table_html(rows.round(3))
    )
    a_lin, a_rf = lin.get("after"), rf.get("after")
    if a_rf is not None and np.isfinite(a_rf) and abs(a_rf - 0.5) >= 0.2:
        linear = (
            f" although a linear model can no longer (AUC {a_lin:.2f})"
            if a_lin is not None and abs(a_lin - 0.5) < 0.2
            else ""
        )
        body += (
            f"<p><b>A random forest still tells the centers apart (AUC {a_rf:.2f}){linear}: "
            "harmonisation did not remove the center signal.</b> Tied or near-constant "
            "features, or center differences beyond location and scale, keep it.</p>"
        )
    elif a_rf is not None and np.isfinite(a_rf):
        body += (
            f"<p>After harmonisation neither a linear model (AUC {a_lin:.2f}) nor a random "
            f"forest (AUC {a_rf:.2f}) tells the centers apart well.</p>"
        )
    return body


def _not_harmonized(summary: dict) -> str:
    info = summary.get("not_harmonized") or {}
    counts = info.get("counts") or {}
    if not counts:
        return ""
    feats = info.get("features", {})
    parts = []
    for why, n in counts.items():
        names = [c for c, w in feats.items() if w == why]
        shown = ", ".join(html.escape(c) for c in names[:8])
        more = f" and {len(names) - 8} more" if len(names) > 8 else ""
        action = info.get("action", {}).get(why, "passed through unharmonised")
        action = "passed through unharmonised" if action == "passed through" else action
        parts.append(f"<li>{n} {html.escape(why)}, {action}: {shown}{more}</li>")
    return (
        "<p>Features ComBat did not harmonise (results/features/combat.json lists them "
        "all):</p><ul>" + "".join(parts) + "</ul>"
    )


def _prevalence(summary: dict) -> str:
    from radstudy.stages import prevalence_line

    body = ""
    for ep, res in sorted((summary.get("prevalence") or {}).items()):
        if res.get("differs"):
            body += f"<p><b>Warning:</b> {html.escape(prevalence_line(ep, res))}.</p>"
        else:
            body += (
                f"<p class='note'>Endpoint {html.escape(ep)}: outcome prevalence does not "
                f"differ between the training centers ({html.escape(res['test'])} "
                f"p = {res['p']:.2g}).</p>"
            )
    return body


def loco_comparison(metrics: list[tuple[str, str, pd.DataFrame]]) -> str:
    """Per model: mean per-center AUC (C-index) of leave-one-center-out with and
    without harmonisation, and which is higher. ``metrics``: (endpoint, model, table)."""
    lines = []
    for endpoint, model, m in metrics:
        per = m[m["cohort"].astype(str).str.contains(":")]
        metric = "auc" if (per["metric"] == "auc").any() else "c_index"
        per = per[per["metric"] == metric]
        kind = per["cohort"].str.split(":", n=1, expand=True) if len(per) else None
        if kind is None or kind.shape[1] < 2:
            continue
        per = per.assign(run=kind[0], center=kind[1])
        wide = per.pivot_table(index="center", columns="run", values="value", aggfunc="first")
        if not {"loco", "loco_unharmonized"} <= set(wide.columns):
            continue
        wide = wide[["loco", "loco_unharmonized"]].dropna()
        if not len(wide):
            continue
        on, off = wide["loco"].mean(), wide["loco_unharmonized"].mean()
        what = "AUC" if metric == "auc" else "C-index"
        verdict = (
            "harmonised generalised better to unseen centers"
            if on > off
            else "unharmonised generalised better to unseen centers"
            if off > on
            else "no difference"
        )
        lines.append(
            f"<li>{html.escape(endpoint)} / {html.escape(model)}: mean per-center {what} "
            f"{on:.3f} with harmonisation, {off:.3f} without ({len(wide)} centers): "
            f"{verdict}</li>"
        )
    if not lines:
        return ""
    return (
        "<p>Leave-one-center-out, each model refit with and without harmonisation "
        "(cohorts loco and loco_unharmonized):</p><ul>" + "".join(lines) + "</ul>"
    )


def combat_section(
    summary: dict,
    raw: pd.DataFrame,
    harm: pd.DataFrame,
    loco: list[tuple[str, str, pd.DataFrame]] | None = None,
) -> str:
    body = ""
    if "center_predictability" in summary:
        body += _center_signal(summary["center_predictability"])
    elif "center_auc_before" in summary:
        body += (
            f"<p>Center predictability (CV AUC of predicting the center from the features, "
            f"training rows): <b>{summary['center_auc_before']:.3f}</b> before, "
            f"<b>{summary['center_auc_after']:.3f}</b> after ComBat (0.5 = centers "
            f"indistinguishable).</p>"
        )
    body += _not_harmonized(summary) + _prevalence(summary) + loco_comparison(loco or [])
    feats = [
        c for c in raw.columns if c not in ("center", "split") and not c.startswith("clinical__")
    ]
    feats = [c for c in feats if c in harm.columns]
    if len(feats) >= 2 and len(raw) > 3:
        from sklearn.decomposition import PCA

        centers = sorted(set(raw["center"].astype(str)) | set(harm["center"].astype(str)))
        colors = model_colors(centers)
        fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.9), layout="constrained")
        for ax, (name, t) in zip(axes, [("before", raw), ("after", harm)], strict=True):
            Z = t[feats].to_numpy(float)
            Z = (Z - np.nanmean(Z, 0)) / (np.nanstd(Z, 0) + 1e-12)
            pca = PCA(n_components=2, random_state=0)
            pcs = pca.fit_transform(np.nan_to_num(Z))
            for center in centers:
                m = (t["center"].astype(str) == center).to_numpy()
                ax.scatter(pcs[m, 0], pcs[m, 1], s=12, label=center, color=colors[center])
            ax.set_title(f"PCA {name} ComBat", fontsize=9)
            ev = pca.explained_variance_ratio_
            ax.set_xlabel(f"PC1 ({ev[0]:.0%})", fontsize=8)
            ax.set_ylabel(f"PC2 ({ev[1]:.0%})", fontsize=8)
            ax.set_box_aspect(1)
            ax.tick_params(labelsize=7)
        legend_right(axes[1], title="center")
        body += fig_html(
            fig,
            "Features by center, before and after harmonisation",
            alt="Two scatter plots of the first two principal components of the features, "
            "coloured by center, before and after ComBat",
            name="pca_combat",
        )
    return body


def confusion_fig(metrics: pd.DataFrame, name: str = "confusion") -> str:
    """Confusion matrices at the training-fixed threshold, one panel per cohort shown
    (internal CV, test, each external center, leave-one-center-out), six per row."""
    from radstudy.report_figures import panel_cohorts

    cells = metrics[metrics["metric"].isin(["tp", "fp", "tn", "fn"])]
    cohorts = panel_cohorts(cells["cohort"].unique())
    if not cohorts:
        return ""
    ncol = min(len(cohorts), 6)
    nrow = -(-len(cohorts) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.8 * ncol, 2.0 * nrow), squeeze=False)
    for ax in axes.ravel()[len(cohorts) :]:
        ax.set_axis_off()
    for ax, cohort in zip(axes.ravel(), cohorts, strict=False):
        v = cells[cells["cohort"] == cohort].set_index("metric")["value"]
        m = np.array([[v.get("tn", 0), v.get("fp", 0)], [v.get("fn", 0), v.get("tp", 0)]])
        ax.imshow(m, cmap="Blues", vmin=0)
        for (i, j), n in np.ndenumerate(m):
            ax.text(j, i, f"{int(n)}", ha="center", va="center", fontsize=9)
        ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=7)
        ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=7)
        ax.set_title(cohort_title(cohort), fontsize=7)
    fig.tight_layout()
    thr = metrics.loc[metrics["metric"] == "threshold", "value"]
    t = (
        f" (threshold {thr.iloc[0]:.3f}, fixed on training out-of-fold predictions)"
        if len(thr)
        else ""
    )
    return fig_html(fig, f"Confusion matrices{t}", name=name)


def fold_summary_note(metrics: pd.DataFrame) -> str:
    """One line per cohort with folds: headline per-fold (per-center) mean +- SD of
    the AUC / C-index next to the pooled value (metrics.tsv has both)."""
    v = metrics.set_index(["cohort", "metric"])["value"]
    lines = []
    for cohort in sorted(metrics["cohort"].unique()):
        for name, label in (("auc", "AUC"), ("c_index", "C-index")):
            for unit in ("fold", "center"):
                if (cohort, f"{name}_{unit}_mean") not in v.index:
                    continue
                lines.append(
                    f"{html.escape(cohort)}: {label} mean of {int(v[cohort, f'{name}_{unit}s'])} "
                    f"per-{unit} values {v[cohort, f'{name}_{unit}_mean']:.3f} +- "
                    f"{v[cohort, f'{name}_{unit}_sd']:.3f} (SD; the headline {name}); "
                    f"pooled over the {unit}s {v.get((cohort, f'{name}_pooled'), np.nan):.3f}"
                )
    return "<p class='note'>" + "<br>".join(lines) + "</p>" if lines else ""


def null_check_failures(endpoint: str, model: str, metrics: pd.DataFrame) -> list[str]:
    """One line per shuffled-label cohort whose AUC lies outside its null band."""
    m = metrics.pivot_table(index="cohort", columns="metric", values="value", aggfunc="first")
    if "null_check_pass" not in m.columns:
        return []
    return [
        f"{endpoint} / {model}: {cohort} AUC {r['auc']:.3f} outside the 99% null band "
        f"[{r['auc_null_band_low']:.3f}, {r['auc_null_band_high']:.3f}]"
        for cohort, r in m[m["null_check_pass"] == 0].iterrows()
    ]


def search_section(card: dict, history: pd.DataFrame | None, top: int = 15) -> str:
    """A searched model's search (radstudy.search): the chosen pipeline, its inner-CV
    score, the best-so-far curve over the trials and the ``top`` parameter importances
    of the final fit's search; "" for a model without a search."""
    info = card.get("search")
    if not info or history is None or not len(history):
        return ""
    body = "<h4>Automatic search (final fit, training rows)</h4>"
    members = info["ensemble"]["members"]
    chosen = html.escape(info["pipeline"])
    body += (
        f"<p>Chosen pipeline: <b>{chosen}</b>, {html.escape(info['metric'])} "
        f"{info['best_value']:.3f} (trial {info['best_trial']} of {info['n_trials']}, "
        f"{info['n_complete']} completed). The inner-CV score picked the configuration "
        "and is optimistic; the cross-validated metrics above come from searches run "
        "inside each outer fold (nested).</p>"
    )
    if info["ensemble"]["method"] != "none":
        body += (
            f"<p class='note'>Ensemble ({html.escape(info['ensemble']['method'])}) of "
            f"{len(members)} configurations:</p>"
            + table_html(pd.DataFrame(members), name="ensemble members")
        )
    if info.get("timed_out"):
        body += (
            "<p class='note'>The search hit search.timeout_s: it tried fewer "
            "configurations, and its result depends on the machine's speed.</p>"
        )
    done = history[history["state"] == "COMPLETE"].sort_values("trial")
    if len(done):
        fig, ax = plt.subplots(figsize=(4.6, 3.0))
        ax.plot(done["trial"], done["value"], "o", ms=3, color="#999", label="trial")
        ax.step(done["trial"], done["value"].cummax(), where="post", label="best so far")
        ax.set_xlabel("trial", fontsize=8)
        ax.set_ylabel(info["metric"], fontsize=8)
        legend_right(ax)
        body += fig_html(
            fig, "Search: inner-CV score of every trial and the best so far", name="search"
        )
        imp = pd.Series(info.get("importances") or {}, dtype=float)
        body += top_bars(
            imp,
            top,
            "importance (fANOVA, seeded)",
            "Search: parameter importances",
            name="search_importances",
        )
    return body


#: metrics that count cases: shown as integers
COUNTS = {"tp", "tn", "fp", "fn", "events", "n", "auc_folds", "auc_centers", "c_index_folds"}


def _metric_cell(r) -> str:
    v, lo, hi = r["value"], r.get("ci_low"), r.get("ci_high")
    if pd.isna(v):
        return ""
    counts = r["metric"] in COUNTS or r["metric"].endswith(("_folds", "_centers"))
    if counts and float(v) == round(float(v)):
        return f"{v:.0f}"
    if pd.notna(lo) and pd.notna(hi):
        return fmt_ci(v, lo, hi) if abs(v) < 100 else f"{sig(v)} ({sig(lo)} to {sig(hi)})"
    if r["metric"].endswith("_p") or r["metric"] == "p":
        return "<0.001" if v < 0.001 else sig(v)
    return sig(v)


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metric x cohort, each cell the value with its 95% CI where there is one; the
    cohorts of the figures first, then the rest (training, shuffled, per-center folds)."""
    from radstudy.report_figures import panel_cohorts

    if not len(metrics):
        return pd.DataFrame()
    m = metrics.assign(txt=metrics.apply(_metric_cell, axis=1))
    wide = m.pivot_table(index="metric", columns="cohort", values="txt", aggfunc="first")
    first = panel_cohorts(wide.columns)
    order = first + sorted(c for c in wide.columns if c not in first)
    rows = list(dict.fromkeys(metrics["metric"]))
    out = wide.reindex(index=rows, columns=order).fillna("")
    out.columns.name = None
    return out


def _km_from_curves(curves: pd.DataFrame, endpoint: str, model: str) -> str:
    """Kaplan-Meier curves as the evaluation wrote them (without predictions to count
    the number at risk): one panel per cohort, low and high risk."""
    from radstudy.report_figures import panel_cohorts

    km = curves[curves["kind"] == "km"] if len(curves) else curves
    if not len(km):
        return ""
    cohorts = (["train"] if (km["cohort"] == "train").any() else []) + panel_cohorts(
        km["cohort"].unique()
    )
    out = ""
    for group in chunks(cohorts, 4):
        fig, axes = plt.subplots(1, len(group), figsize=(2.8 * len(group), 2.8), squeeze=False)
        for ax, cohort in zip(axes[0], group, strict=True):
            for series, color in (("low", "#0072B2"), ("high", "#D55E00")):
                d = km[(km["cohort"] == cohort) & (km["series"] == series)]
                ax.step(d["x"], d["y"], where="post", color=color, label=f"{series} risk")
            ax.set_title(cohort_title(cohort), fontsize=8)
            ax.set_ylim(0, 1.05)
        legend_right(axes[0][-1])
        fig.tight_layout()
        out += fig_html(
            fig,
            f"{endpoint} / {model}: Kaplan-Meier by risk group (cutoff = training median)",
            name=f"km_{endpoint}_{model}",
        )
    return out


def model_section(
    endpoint: str,
    model: str,
    card: dict,
    metrics: pd.DataFrame,
    curves: pd.DataFrame,
    selection: pd.DataFrame,
    search: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None,
    top: int = 15,
    heading: bool = True,
) -> str:
    """One model (under an <h3> with ``heading``): its metrics with CIs (folded), confusion matrices, Kaplan-Meier with
    the number at risk (from ``predictions``; from ``curves`` without them), the search,
    the ``top`` feature weights, LASSO path, Cox table and nomogram. ROC, calibration
    and decision curves are drawn per endpoint with every model (:func:`endpoint_curves`)."""
    body = (
        f"<h3 id='{html.escape(endpoint)}--{html.escape(model)}'>"
        f"{html.escape(endpoint)} / {html.escape(model)}</h3>"
        if heading
        else ""
    )
    body += (
        f"<p class='note'>Feature groups: {', '.join(card.get('groups', []) or [])}; "
        f"trained on {card.get('n_train', '?')} cases of centers "
        f"{', '.join(card.get('training_centers', []))}.</p>"
    )
    body += table_html(
        metrics_table(metrics), index=True, name=f"metrics {endpoint} {model}", formatted=True
    )
    body += fold_summary_note(metrics)
    body += confusion_fig(metrics, name=f"confusion_{endpoint}_{model}")
    if predictions is not None and len(predictions):
        body += km_panels(predictions, model, endpoint)
    else:
        body += _km_from_curves(curves, endpoint, model)
    body += search_section(card, search, top)
    if len(selection):
        body += "<h4>Selected features</h4>" + table_html(
            selection, name=f"selected features {endpoint} {model}"
        )
        if selection["weight"].notna().any():
            body += top_bars(
                selection.set_index("feature")["weight"],
                top,
                "weight (standardised features)",
                "Feature weights of the final model",
                name=f"weights_{endpoint}_{model}",
            )
    if "lasso" in card:
        lasso = card["lasso"]
        path = pd.DataFrame(lasso["path"], index=lasso["grid"])
        keep = path.abs().max().sort_values(ascending=False).index[:MAX_SERIES]
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2), layout="constrained")
        for name in keep:
            axes[0].plot(path.index, path[name], lw=1, label=name[:40])
        axes[0].set_xscale("log")
        axes[0].set_xlabel(lasso["param"], fontsize=8)
        axes[0].set_ylabel("coefficient", fontsize=8)
        more = f" ({len(keep)} largest of {path.shape[1]})" if path.shape[1] > len(keep) else ""
        axes[0].set_title("LASSO coefficient path" + more, fontsize=9)
        m, sd = np.asarray(lasso["cv_mean"]), np.asarray(lasso["cv_sd"])
        axes[1].errorbar(lasso["grid"], m, yerr=sd, fmt="o-", ms=3)
        axes[1].set_xscale("log")
        axes[1].set_xlabel(lasso["param"], fontsize=8)
        axes[1].set_ylabel(lasso["cv_metric"], fontsize=8)
        axes[1].set_title("LASSO cross-validation error", fontsize=9)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                   ncol=2, fontsize=7, frameon=False)  # fmt: skip
        body += fig_html(
            fig, "LASSO path and CV error (training rows)", name=f"lasso_{endpoint}_{model}"
        )
    if "multivariable_cox" in card:
        mv = pd.DataFrame(card["multivariable_cox"])
        ph = pd.DataFrame(card.get("ph_test", {})).rename(
            columns={"statistic": "PH statistic", "p": "PH p"}
        )
        if len(ph):
            mv = mv.merge(ph, on="covariate", how="left")
        body += (
            f"<h4>Multivariable Cox with clinical variables (training rows, n = "
            f"{card.get('multivariable_cox_n', '?')}): hazard ratios and the "
            "proportional-hazards test</h4>" + table_html(mv, name=f"cox {endpoint} {model}")
        )
    if "nomogram" in card:
        nomo = card["nomogram"]
        pts = pd.DataFrame(nomo["points"])
        fig, ax = plt.subplots(figsize=(7, 0.5 * pts["covariate"].nunique() + 1.5))
        names = list(dict.fromkeys(pts["covariate"]))
        for i, name in enumerate(names):
            d = pts[pts["covariate"] == name]
            ax.plot(d["points"], [i] * len(d), "k-|")
            for _, r in d.iterrows():
                ax.annotate(
                    sig(r["value"], 2),
                    (r["points"], i),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                )
        ax.set_yticks(range(len(names)), [n[:35] for n in names])
        ax.set_xlabel("points")
        ax.set_title(f"Nomogram (survival at t = {sig(nomo['time_point'])})")
        body += fig_html(
            fig,
            "Nomogram: points per covariate (standardised scale)",
            name=f"nomogram_{endpoint}_{model}",
        )
        body += "<h4>Total points -> predicted event-free survival</h4>" + table_html(
            pd.DataFrame(nomo["total"]), name=f"nomogram total {endpoint} {model}"
        )
    return body


def _model_details(endpoint: str, model: str, metrics: pd.DataFrame, inner: str, open_: bool):
    """A model's section folded under one line: its internal-CV AUC / C-index; the
    endpoint's headline model open."""
    from radstudy.report_summary import headline_metric

    line = ""
    if len(metrics):
        name = headline_metric(metrics)
        cv = metrics[(metrics["cohort"] == "cv") & (metrics["metric"] == name)]
        if len(cv):
            r = cv.iloc[0]
            what = "AUC" if name == "auc" else "C-index"
            line = f": internal-CV {what} {fmt_ci(r['value'], r.get('ci_low'), r.get('ci_high'))}"
    tag = " (headline model)" if open_ else ""
    return (
        f"<details class='model' id='{html.escape(endpoint)}--{html.escape(model)}'"
        f"{' open' if open_ else ''}><summary><h3>{html.escape(endpoint)} / "
        f"{html.escape(model)}</h3>{html.escape(line + tag)}</summary>{inner}</details>"
    )


def endpoint_curves(endpoint: str, curves: dict[str, pd.DataFrame], colors: dict) -> str:
    """ROC, calibration and decision curves of every model of an endpoint: one panel
    per cohort, one line per model."""
    return "".join(
        curve_panels(curves, kind, colors, endpoint) for kind in ("roc", "calibration", "decision")
    )


def top_selected(selections: list[pd.DataFrame], available, top: int) -> list[str]:
    """The ``top`` features chosen by the most models (ties: larger mean |weight|)."""
    rows = [
        sel.assign(absw=sel["weight"].abs() if "weight" in sel else np.nan)[["feature", "absw"]]
        for sel in selections
        if "feature" in sel
    ]
    if not rows:
        return []
    d = pd.concat(rows)
    d = d[d["feature"].isin(set(available))]
    rank = d.groupby("feature").agg(n=("feature", "size"), w=("absw", "mean")).fillna(0)
    rank = rank.sort_values(["n", "w"], ascending=False)
    return sorted(rank.index[:top])


def selected_features_section(
    raw: pd.DataFrame,
    cases: pd.DataFrame,
    selections: list[pd.DataFrame],
    descriptors: list[str],
    top: int = 15,
) -> str:
    """Correlation clustermap of the ``top`` selected features (chosen by the most
    models; training rows); Spearman of selected deep features with the radiological
    descriptors; "" when fewer than two features were selected."""
    chosen = top_selected(selections, raw.columns, top)
    train = raw[raw["split"] == "train"]
    body = ""
    if len(chosen) >= 2 and len(train) > 3:
        import seaborn as sns

        corr = train[chosen].corr(method="spearman").fillna(0)
        grid = sns.clustermap(
            corr,
            cmap="vlag",
            vmin=-1,
            vmax=1,
            figsize=(6, 6),
            xticklabels=False,
            yticklabels=[c[:40] for c in chosen],
        )
        body += fig_html(
            grid.figure,
            f"Spearman correlation of the selected features ({len(chosen)}: those the most "
            "models selected), hierarchically clustered (training rows)",
            name="selected_correlation",
        )
        Z = train[chosen].to_numpy(float)
        Z = (Z - np.nanmean(Z, 0)) / (np.nanstd(Z, 0) + 1e-12)
        grid = sns.clustermap(
            pd.DataFrame(np.nan_to_num(Z), index=train.index, columns=chosen),
            cmap="vlag",
            vmin=-3,
            vmax=3,
            figsize=(7, 6),
            xticklabels=False,
            yticklabels=False,
        )
        body += fig_html(
            grid.figure,
            f"Cases x selected features (z-scores), clustered: training cases, the "
            f"{len(chosen)} features the most models selected",
            name="selected_cases",
        )
    deep = [f for f in chosen if "__deep_" in f]
    desc = [d for d in descriptors if d in cases.columns]
    if deep and desc:
        from radstudy.deep import spearman_with_descriptors

        d = cases.set_index("case_id").loc[train.index, desc].apply(pd.to_numeric, errors="coerce")
        body += "<h4>Selected deep features vs radiological descriptors (Spearman)</h4>"
        body += table_html(spearman_with_descriptors(train[deep], d), name="deep vs descriptors")
    return body


def checklist(cfg: dict, n_train: int) -> str:
    """A CLEAR-style checklist of what this run did (facts from the config)."""
    p, h, r = cfg["preprocess"], cfg["harmonization"], cfg["reproducibility"]
    items = [
        ("Study design", f"{len(cfg['endpoints'])} endpoint(s); {n_train} training cases"),
        (
            "Imaging",
            f"{cfg['cohort']['modality']}, sequences {', '.join(cfg['cohort']['sequences'])}",
        ),
        ("Resampling", f"{p['spacing']} mm, {p['interpolator']} interpolation, masks nearest"),
        (
            "Bias correction / window",
            "N4" if cfg["cohort"]["modality"] == "MRI" else f"HU {p['hu_window']}",
        ),
        (
            "Normalisation",
            p["normalization"]
            + (" (landmarks from training cases only)" if p["normalization"] == "nyul" else ""),
        ),
        (
            "Segmentation",
            f"{segmentation_label(cfg['segmentation'])}; readers {', '.join(cfg['cohort']['readers'])}",
        ),
        (
            "Feature extraction",
            f"pyradiomics, params {cfg['features']['params']}, mode {cfg['features']['mode']}",
        ),
        (
            "Harmonisation",
            "ComBat fitted on training rows, per group "
            + ", ".join(f"{g}: {m}" for g, m in h["groups"].items())
            + f"; tied features (> {h['tie_threshold']:g} of a center): {h['tied']}"
            if h["enabled"]
            else "none",
        ),
        (
            "Reproducibility",
            f"ICC {r['icc_type']} >= {r['threshold']}" if r["enabled"] else "none",
        ),
        ("Feature selection", ", ".join(cfg["selection"]) + " (inside every CV fold)"),
        (
            "Validation",
            f"{cfg['evaluation']['cv']['n_splits']}-fold CV x {cfg['evaluation']['cv']['n_repeats']}, held-out test, external centers",
        ),
        (
            "Uncertainty",
            f"95% CIs ({cfg['evaluation']['bootstrap']} bootstrap replicates, DeLong for AUC)",
        ),
        (
            "Leakage check",
            "shuffled-label CV (should be AUC ~0.5)"
            if cfg["evaluation"].get("shuffled_null")
            else "off",
        ),
        (
            "Reproducibility of the run",
            f"seed {cfg['seed']}, radstudy {__version__}, pinned dependencies",
        ),
    ]
    return table_html(
        pd.DataFrame(items, columns=["item", "this run"]), name="checklist", collapse=30
    )


def feature_counts(columns) -> dict[str, int]:
    """Feature columns of the raw table per kind: radiomics, deep, clinical."""
    out: dict[str, int] = {}
    for c in columns:
        if "__" not in c:
            continue
        kind = (
            "clinical" if c.startswith("clinical__") else "deep" if "__deep_" in c else "radiomics"
        )
        out[kind] = out.get(kind, 0) + 1
    return out


def null_banner(failures: list[str]) -> str:
    """Top-of-report alarm when a model's shuffled-label AUC left its null band."""
    if not failures:
        return ""
    items = "".join(f"<li>{html.escape(f)}</li>" for f in failures)
    return (
        "<div class='alarm'><b>Null check failed.</b> With shuffled labels these models "
        "still discriminate, which points to leakage or a broken model; do not trust "
        f"their metrics until explained:<ul>{items}</ul></div>"
    )


# --------------------------------------------------------------------------- entry point
def _loco_metrics(inputs: dict) -> list[tuple[str, str, pd.DataFrame]]:
    """(endpoint, model, metrics) of every model, for the leave-one-center-out lines."""
    out = []
    for card_p, met_p in zip(inputs["cards"], inputs["metrics"], strict=True):
        card = json.loads(Path(card_p).read_text(encoding="utf-8"))
        out.append((card["endpoint"], card["model"], pd.read_csv(met_p, sep="\t")))
    return out


def feature_table_section(column_paths: list[str], cards: list[dict]) -> str:
    """Where the features came from (feature-table entry point: every column's role,
    what was left out or ignored) and how gaps were handled (per model: features
    dropped for missing too often, values imputed per feature group, training rows
    without an outcome)."""
    body = ""
    if column_paths:
        roles = pd.read_csv(column_paths[0], sep="\t", dtype={"column": str})
        counts = roles["role"].value_counts()
        parts = [f"{counts.get(r, 0)} {r}" for r in ("feature", "sheet", "ignored", "left out")]
        body += f"<p>Feature table columns: {html.escape(', '.join(parts))} (plus the id).</p>"
        for role, why in (
            ("left out", "not matched by cohort.feature_columns"),
            ("ignored", "cohort.ignore_columns"),
        ):
            names = roles.loc[roles["role"] == role, "column"].tolist()
            if names:
                shown = ", ".join(names[:20]) + (
                    f" ... ({len(names) - 20} more)" if len(names) > 20 else ""
                )
                body += f"<p class='note'>{role.capitalize()} ({why}): {html.escape(shown)}</p>"
    rows = []
    for card in cards:
        imp = card.get("imputation")
        if not imp:
            continue
        filled = ", ".join(f"{g}: {n}" for g, n in imp["imputed_values"].items()) or "none"
        dropped = sorted(imp["dropped"])
        rows.append(
            {
                "endpoint": card["endpoint"],
                "model": card["model"],
                "values imputed (training rows, by group)": filled,
                "features dropped (too many gaps)": len(dropped),
                "rows without outcome": len(card.get("rows_without_outcome", [])),
            }
        )
    if rows:
        strategy = next(c["imputation"]["strategy"] for c in cards if c.get("imputation"))
        body += (
            f"<p>Missing values: filled with the training rows' {html.escape(strategy)} "
            "inside every fit (each CV fold too), before harmonisation.</p>"
        )
        body += table_html(pd.DataFrame(rows), name="missing values")
    return body


def _predictions(paths: list[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """Per-center prediction tables grouped by (endpoint, model), from their paths
    (results/evaluation/{endpoint}/{model}/predictions/{center}.tsv)."""
    out: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for p in paths:
        parts = Path(p).parts
        out.setdefault((parts[-4], parts[-3]), []).append(_read_tsv(p))
    return {k: pd.concat(v, ignore_index=True) for k, v in out.items()}


def render_report(
    inputs: dict,
    cfg: dict,
    out_html: str,
    options: dict | None = None,
    figures: str | None = None,
    radiomics: dict | None = None,
) -> None:
    """Write the report from the workflow's outputs (paths in ``inputs``); ``options``:
    config key report (clinical labels, how many features charts show); ``figures``:
    folder that receives every figure as PNG + SVG; ``radiomics``: the pyradiomics
    params of the extraction (the checklists' discretisation, image types, classes)."""
    options = {"clinical_labels": {}, "top_features": 15, **(options or {})}
    top = int(options["top_features"])
    with figure_dir(figures):
        page = _page(inputs, cfg, options, top, radiomics)
    Path(out_html).parent.mkdir(parents=True, exist_ok=True)
    Path(out_html).write_text(page, encoding="utf-8")


def _page(inputs: dict, cfg: dict, options: dict, top: int, radiomics: dict | None) -> str:
    cases = _read_tsv(inputs["cases"])
    excluded = _read_tsv(inputs["excluded"])
    icc = pd.read_csv(inputs["icc"], sep="\t")
    combat = json.loads(Path(inputs["combat"]).read_text(encoding="utf-8"))
    raw = pd.concat(pd.read_parquet(p) for p in inputs["raw"]).sort_index()
    harm = pd.concat(pd.read_parquet(p) for p in inputs["harmonized"]).sort_index()
    clinical = list(cfg["cohort"]["clinical"])
    endpoints = cfg.get("endpoints", {})
    preds = _predictions(list(inputs.get("predictions", [])))

    # every model's outputs, in config order (which fixes its colour)
    searches = inputs.get("searches") or [None] * len(inputs["cards"])
    runs = []
    for card_p, met_p, cur_p, sel_p, search_p in zip(
        inputs["cards"],
        inputs["metrics"],
        inputs["curves"],
        inputs["selections"],
        searches,
        strict=True,
    ):
        card = json.loads(Path(card_p).read_text(encoding="utf-8"))
        sel = pd.read_csv(sel_p, sep="\t") if Path(sel_p).stat().st_size > 1 else pd.DataFrame()
        runs.append(
            {
                "endpoint": card["endpoint"],
                "model": card["model"],
                "card": card,
                "metrics": pd.read_csv(met_p, sep="\t"),
                "curves": pd.read_parquet(cur_p),
                "selection": sel,
                "search": pd.read_parquet(search_p) if search_p else None,
            }
        )
    colors = model_colors([r["model"] for r in runs])
    metrics = {(r["endpoint"], r["model"]): r["metrics"] for r in runs}
    cards = {(r["endpoint"], r["model"]): r["card"] for r in runs}

    null_failed = [
        f for r in runs for f in null_check_failures(r["endpoint"], r["model"], r["metrics"])
    ]
    summary = summary_block(cfg, cases, combat, metrics, cards, colors, null_banner(null_failed))
    qc_records = read_qc_pieces(list(inputs["qc"]))
    sections = [
        ("flow", "Cohort", "Cohort flow", cohort_flow(cases, excluded)),
        (
            "data",
            "Data",
            "Features and missing values",
            feature_table_section(list(inputs.get("columns", [])), list(cards.values())),
        ),
        (
            "table1",
            "Table 1",
            "Table 1: clinical characteristics",
            table_one(cases, clinical, endpoints, options["clinical_labels"]),
        ),
        (
            "qc",
            "QC",
            "Preprocessing quality control",
            qc_section(qc_records)
            + normalisation_figures(
                qc_records,
                dict(zip(cases["case_id"].astype(str), cases["center"].astype(str), strict=True)),
            ),
        ),
        (
            "segmentation",
            "Segmentation",
            "Segmentation agreement",
            segmentation_section(list(inputs.get("segmentation", []))),
        ),
        (
            "icc",
            "ICC",
            "Reproducibility across readers (ICC)",
            icc_section(icc, cfg["reproducibility"]["threshold"]),
        ),
        (
            "combat",
            "ComBat",
            "Harmonisation across centers (ComBat)",
            combat_section(combat, raw, harm, _loco_metrics(inputs)),
        ),
    ]
    models = ""
    for ep in dict.fromkeys(r["endpoint"] for r in runs):
        mine = [r for r in runs if r["endpoint"] == ep]
        models += f"<h3>Endpoint {html.escape(ep)}: every model</h3>" + endpoint_curves(
            ep, {r["model"]: r["curves"] for r in mine}, colors
        )
        best = headline_model({r["model"]: r["metrics"] for r in mine})
        for r in mine:
            inner = model_section(
                ep,
                r["model"],
                r["card"],
                r["metrics"],
                r["curves"],
                r["selection"],
                r["search"],
                preds.get((ep, r["model"])),
                top,
                heading=False,
            )
            models += _model_details(ep, r["model"], r["metrics"], inner, r["model"] == best)
    sections.append(("models", "Models", "Models and evaluation", models))
    sels = [r["selection"] for r in runs if len(r["selection"])]
    sections.append(
        (
            "features",
            "Selected features",
            "Selected features",
            selected_features_section(raw, cases, sels, list(cfg["cohort"]["descriptors"]), top),
        )
    )
    sections.append(
        (
            "checklist",
            "Methods",
            "What this run did",
            checklist(cfg, int((cases["split"] == "train").sum())),
        )
    )
    # a section with nothing to show is left out (no images in a feature-table study)
    sections = [s for s in sections if s[3]]
    counts = feature_counts(raw.columns)
    known = checklist_facts(cfg, cases, excluded, list(cards.values()), counts, radiomics)
    sections.append(
        (
            "checklists",
            "Reporting checklists",
            "Reporting checklists (TRIPOD+AI, CLEAR)",
            checklists_section(known, {"summary"} | {s[0] for s in sections}),
        )
    )
    nav = " ".join(
        f'<a href="#{a}">{html.escape(t)}</a>'
        for a, t, _, _ in [("summary", "Summary", "", ""), *sections]
    )
    title = html.escape(cfg["study"]["name"])
    body = "".join(section(a, t, b) for a, _, t, b in sections)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}: radstudy report</title><style>{CSS}</style></head><body>"
        f"<h1>{title}</h1>{summary}<nav>{nav}</nav>{body}"
        f"<p class='note'>radstudy {__version__}</p><script>{SORT_JS}{PRINT_JS}</script></body></html>\n"
    )
