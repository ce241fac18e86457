"""The self-contained HTML report: tables and figures of one run, for clinicians.

Figures are drawn with matplotlib and inlined as base64 PNG, so the report is
one file that can be mailed or archived. Every section reads the workflow's
own outputs; nothing is recomputed that the workflow already wrote.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from radstudy import __version__  # noqa: E402

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:3px solid #2b6cb0}h2{color:#2b6cb0;border-bottom:1px solid #ccd;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccd;padding:3px 7px;text-align:right}th{background:#eef3fa}
td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.4em;vertical-align:top}figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em}.ok{color:#2f855a}.warn{color:#c05621}
.alarm{border:2px solid #c53030;background:#fff5f5;color:#742a2a;padding:.5em 1em;margin:1em 0}
nav a{margin-right:1em}
"""


# --------------------------------------------------------------------------- helpers
def fig_html(fig, caption: str, alt: str | None = None) -> str:
    """Inline a matplotlib figure as a base64 PNG <figure> (deterministic metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return png_html(buf.getvalue(), caption, alt)


def png_html(png: bytes | str | Path, caption: str, alt: str | None = None) -> str:
    """Inline PNG bytes (or a PNG file written by another rule) as a base64 <figure>."""
    if not isinstance(png, bytes):
        png = Path(png).read_bytes()
    data = base64.b64encode(png).decode()
    return (
        f'<figure><img alt="{html.escape(alt or caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table_html(df: pd.DataFrame, floatfmt: str = "{:.3g}", index: bool = False) -> str:
    """A DataFrame as an HTML table with fixed float formatting."""
    if df is None or len(df) == 0:
        return '<p class="note">(none)</p>'
    return df.to_html(
        index=index,
        border=0,
        na_rep="",
        float_format=lambda v: floatfmt.format(v),
        escape=True,
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


def table_one(cases: pd.DataFrame, clinical: list[str], outcome: str | None) -> str:
    """Clinical variables by split and by outcome, with t-test / chi-square p-values."""
    rows = []
    groupings = [("split", cases["split"])]
    if outcome and outcome in cases.columns:
        groupings.append((outcome, cases[outcome]))
    for gname, g in groupings:
        levels = sorted(g.dropna().unique(), key=str)
        for col in clinical:
            x = pd.to_numeric(cases[col], errors="coerce")
            n_unique = x.nunique()
            row = {"by": gname, "variable": col}
            parts = [x[g == lv].dropna() for lv in levels]
            if n_unique <= 5:  # categorical: counts and chi-square
                tab = pd.crosstab(x, g)
                for lv in levels:
                    col_counts = tab[lv] if lv in tab else pd.Series(dtype=int)
                    row[str(lv)] = ", ".join(f"{int(k)}:{int(v)}" for k, v in col_counts.items())
                p = (
                    stats.chi2_contingency(tab)[1]
                    if tab.shape[0] > 1 and tab.shape[1] > 1
                    else np.nan
                )
                row["test"] = "chi-square"
            else:
                for lv, part in zip(levels, parts, strict=True):
                    row[str(lv)] = f"{part.mean():.3g} ± {part.std():.3g}"
                if len(parts) == 2:
                    p = stats.ttest_ind(*parts, equal_var=False).pvalue
                    row["test"] = "t-test"
                else:
                    p = stats.f_oneway(*parts).pvalue if len(parts) > 2 else np.nan
                    row["test"] = "ANOVA"
            row["p"] = p
            rows.append(row)
    return table_html(pd.DataFrame(rows))


def normalisation_figures(norm_paths: list[str], centers: dict[str, str]) -> str:
    """Per sequence: ROI intensity quantile curves of every case before and after
    normalisation, coloured by center (curves that collapse = centers made comparable)."""
    rows = []
    for p in norm_paths:
        try:
            q = json.loads(Path(p).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # exclusion marker
        rows.append((Path(p).parts[-2], q))
    body = ""
    for seq in sorted({s for s, _ in rows}):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
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
        axes[1].legend(handles, list(colors), title="center", fontsize=7)
        body += fig_html(fig, f"{seq}: ROI intensity percentiles per case, by center")
    return body


def qc_section(qc_paths: list[str]) -> str:
    rows, figs = [], ""
    for p in qc_paths:
        try:
            q = json.loads(Path(p).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # exclusion marker: the case is listed under exclusions
        parts = Path(p).parts
        rows.append(
            {
                "case_id": parts[-3],
                "seq": parts[-2],
                "spacing_in": "x".join(f"{s:.2g}" for s in q.get("input_spacing", [])),
                "spacing_out": "x".join(f"{s:.2g}" for s in q.get("output_spacing", [])),
                "bias_min": (q.get("bias_field") or {}).get("min"),
                "bias_max": (q.get("bias_field") or {}).get("max"),
            }
        )
    df = pd.DataFrame(rows)
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
        ax.legend()
        figs = fig_html(fig, "Range of the estimated bias field per case (MRI)")
    return (
        figs
        + "<details><summary>Per-case preprocessing record</summary>"
        + table_html(df)
        + "</details>"
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
            )
        ent = pd.read_csv(folder / "entropy.tsv", sep="\t")
        if len(ent):
            summ = ent.groupby("method")[["entropy_core", "entropy_rim"]].mean().reset_index()
            body += "<h4>Entropy of the soft output: core vs rim (mean)</h4>" + table_html(summ)
    return body or '<p class="note">One mask source only: nothing to compare.</p>'


def icc_section(icc: pd.DataFrame, threshold: float) -> str:
    if not len(icc):
        return '<p class="note">Only one reader: no ICC.</p>'
    cats = icc.groupby(["kind", "category"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(5, 3))
    for kind, part in icc.groupby("kind"):
        ax.hist(part["icc"].dropna().clip(-0.2, 1), bins=30, alpha=0.6, label=kind)
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set_xlabel("ICC")
    ax.set_ylabel("features")
    ax.legend()
    return fig_html(fig, f"ICC distribution (threshold {threshold})") + table_html(cats, index=True)


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

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, (name, t) in zip(axes, [("before", raw), ("after", harm)], strict=True):
            Z = t[feats].to_numpy(float)
            Z = (Z - np.nanmean(Z, 0)) / (np.nanstd(Z, 0) + 1e-12)
            pcs = PCA(n_components=2, random_state=0).fit_transform(np.nan_to_num(Z))
            for center in sorted(t["center"].unique()):
                m = (t["center"] == center).to_numpy()
                ax.scatter(pcs[m, 0], pcs[m, 1], s=12, label=center)
            ax.set_title(f"PCA {name} ComBat")
            ax.set_xlabel("PC1")
            ax.set_ylabel("PC2")
        axes[1].legend(fontsize=7)
        body += fig_html(fig, "Features by center, before and after harmonisation")
    return body


def _curve_fig(
    curves: pd.DataFrame, kind: str, xlabel: str, ylabel: str, title: str, diagonal: bool = False
):
    part = curves[curves["kind"] == kind]
    if not len(part):
        return ""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for (cohort, series), d in part.groupby(["cohort", "series"], sort=True):
        label = cohort if series in ("", "model") else f"{cohort} {series}"
        style = "--" if series in ("treat_all", "treat_none", "low") else "-"
        ax.plot(
            d["x"],
            d["y"],
            style,
            label=label,
            lw=1.4,
            drawstyle="steps-post" if kind == "km" else "default",
        )
    if diagonal:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    if kind == "decision":
        ymax = part["y"].max()
        ax.set_ylim(-0.05, max(ymax, 0.05) * 1.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return fig_html(fig, title)


def confusion_fig(metrics: pd.DataFrame) -> str:
    """Confusion matrices at the training-fixed threshold, one panel per cohort."""
    cells = metrics[metrics["metric"].isin(["tp", "fp", "tn", "fn"])]
    cohorts = [c for c in sorted(cells["cohort"].unique()) if not c.startswith("cv_shuffled")]
    if not cohorts:
        return ""
    fig, axes = plt.subplots(1, len(cohorts), figsize=(2.3 * len(cohorts), 2.4), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts, strict=True):
        v = cells[cells["cohort"] == cohort].set_index("metric")["value"]
        m = np.array([[v.get("tn", 0), v.get("fp", 0)], [v.get("fn", 0), v.get("tp", 0)]])
        ax.imshow(m, cmap="Blues", vmin=0)
        for (i, j), n in np.ndenumerate(m):
            ax.text(j, i, f"{int(n)}", ha="center", va="center", fontsize=9)
        ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=7)
        ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=7)
        ax.set_title(cohort, fontsize=8)
    thr = metrics.loc[metrics["metric"] == "threshold", "value"]
    t = (
        f" (threshold {thr.iloc[0]:.3f}, fixed on training out-of-fold predictions)"
        if len(thr)
        else ""
    )
    return fig_html(fig, f"Confusion matrices{t}")


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


def search_section(card: dict, history: pd.DataFrame | None) -> str:
    """A searched model's search (radstudy.search): the chosen pipeline, its inner-CV
    score, the best-so-far curve over the trials and the parameter importances of the
    final fit's search; "" for a model without a search."""
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
            f"{len(members)} configurations:</p>" + table_html(pd.DataFrame(members))
        )
    if info.get("timed_out"):
        body += (
            "<p class='note'>The search hit search.timeout_s: it tried fewer "
            "configurations, and its result depends on the machine's speed.</p>"
        )
    done = history[history["state"] == "COMPLETE"].sort_values("trial")
    if len(done):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        axes[0].plot(done["trial"], done["value"], "o", ms=3, color="#999", label="trial")
        axes[0].step(done["trial"], done["value"].cummax(), where="post", label="best so far")
        axes[0].set_xlabel("trial")
        axes[0].set_ylabel(info["metric"])
        axes[0].legend(fontsize=7)
        imp = info.get("importances") or {}
        if imp:
            names = list(imp)[::-1]
            axes[1].barh(names, [imp[n] for n in names], color="#2b6cb0")
            axes[1].set_xlabel("importance (fANOVA, seeded)")
        else:
            axes[1].text(0.5, 0.5, "importances not available", ha="center", va="center")
            axes[1].set_axis_off()
        body += fig_html(fig, "Search: best inner-CV score so far; parameter importances")
    return body


def model_section(
    endpoint: str,
    model: str,
    card: dict,
    metrics: pd.DataFrame,
    curves: pd.DataFrame,
    selection: pd.DataFrame,
    search: pd.DataFrame | None = None,
) -> str:
    body = f"<h3>{html.escape(endpoint)} / {html.escape(model)}</h3>"
    body += (
        f"<p class='note'>Feature groups: {', '.join(card.get('groups', []) or [])}; "
        f"trained on {card.get('n_train', '?')} cases of centers "
        f"{', '.join(card.get('training_centers', []))}.</p>"
    )
    wide = metrics.pivot_table(index="metric", columns="cohort", values="value", aggfunc="first")
    ci = metrics.assign(
        txt=lambda d: d.apply(
            lambda r: (
                f"{r['value']:.3f}"
                + (f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if pd.notna(r.get("ci_low")) else "")
            ),
            axis=1,
        )
    ).pivot_table(index="metric", columns="cohort", values="txt", aggfunc="first")
    body += table_html(ci if len(ci) else wide, index=True)
    body += fold_summary_note(metrics)
    body += _curve_fig(curves, "roc", "1 - specificity", "sensitivity", "ROC", diagonal=True)
    body += _curve_fig(
        curves,
        "calibration",
        "predicted probability",
        "observed frequency",
        "Calibration",
        diagonal=True,
    )
    body += _curve_fig(curves, "decision", "threshold probability", "net benefit", "Decision curve")
    body += confusion_fig(metrics)
    body += _curve_fig(
        curves,
        "km",
        "time",
        "event-free survival",
        "Kaplan-Meier by risk group (cutoff = training median)",
    )
    body += search_section(card, search)
    if len(selection):
        body += "<h4>Selected features</h4>" + table_html(selection)
        if selection["weight"].notna().any():
            sel = selection.dropna(subset=["weight"]).sort_values("weight")
            fig, ax = plt.subplots(figsize=(5, 0.3 * len(sel) + 1))
            ax.barh(
                sel["feature"],
                sel["weight"],
                color=np.where(sel["weight"] > 0, "#c05621", "#2b6cb0"),
            )
            ax.set_xlabel("weight (standardised features)")
            body += fig_html(fig, "Feature weights of the final model")
    if "lasso" in card:
        lasso = card["lasso"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for name, coefs in lasso["path"].items():
            axes[0].plot(lasso["grid"], coefs, lw=1, label=name[:30])
        axes[0].set_xscale("log")
        axes[0].set_xlabel(lasso["param"])
        axes[0].set_ylabel("coefficient")
        axes[0].set_title("LASSO coefficient path")
        m, sd = np.asarray(lasso["cv_mean"]), np.asarray(lasso["cv_sd"])
        axes[1].errorbar(lasso["grid"], m, yerr=sd, fmt="o-", ms=3)
        axes[1].set_xscale("log")
        axes[1].set_xlabel(lasso["param"])
        axes[1].set_ylabel(lasso["cv_metric"])
        axes[1].set_title("LASSO cross-validation error")
        body += fig_html(fig, "LASSO path and CV error (training rows)")
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
            "proportional-hazards test</h4>" + table_html(mv)
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
                    f"{r['value']:.2g}",
                    (r["points"], i),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                )
        ax.set_yticks(range(len(names)), [n[:35] for n in names])
        ax.set_xlabel("points")
        ax.set_title(f"Nomogram (survival at t = {nomo['time_point']:.3g})")
        body += fig_html(fig, "Nomogram: points per covariate (standardised scale)")
        body += "<h4>Total points -> predicted event-free survival</h4>" + table_html(
            pd.DataFrame(nomo["total"])
        )
    return body


def selected_features_section(
    raw: pd.DataFrame, cases: pd.DataFrame, selections: list[pd.DataFrame], descriptors: list[str]
) -> str:
    """Correlation clustermap of the selected features (training rows); Spearman of
    selected deep features with the radiological descriptors."""
    chosen = sorted(
        {f for sel in selections if "feature" in sel for f in sel["feature"] if f in raw.columns}
    )
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
            "Spearman correlation of the selected features, "
            "hierarchically clustered (training rows)",
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
        body += fig_html(grid.figure, "Cases x selected features (z-scores), clustered")
    deep = [f for f in chosen if "__deep_" in f]
    desc = [d for d in descriptors if d in cases.columns]
    if deep and desc:
        from radstudy.deep import spearman_with_descriptors

        d = cases.set_index("case_id").loc[train.index, desc].apply(pd.to_numeric, errors="coerce")
        body += "<h4>Selected deep features vs radiological descriptors (Spearman)</h4>"
        body += table_html(spearman_with_descriptors(train[deep], d))
    return body or '<p class="note">Fewer than two selected features.</p>'


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
            f"{cfg['segmentation']['method']}; readers {', '.join(cfg['cohort']['readers'])}",
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
    return table_html(pd.DataFrame(items, columns=["item", "this run"]))


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
        card = json.loads(Path(card_p).read_text())
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
        body += table_html(pd.DataFrame(rows))
    return body


def render_report(inputs: dict, cfg: dict, out_html: str) -> None:
    """Write the report from the workflow's outputs (paths in ``inputs``)."""
    cases = _read_tsv(inputs["cases"])
    excluded = _read_tsv(inputs["excluded"])
    icc = pd.read_csv(inputs["icc"], sep="\t")
    combat = json.loads(Path(inputs["combat"]).read_text())
    raw = pd.concat(pd.read_parquet(p) for p in inputs["raw"]).sort_index()
    harm = pd.concat(pd.read_parquet(p) for p in inputs["harmonized"]).sort_index()
    clinical = list(cfg["cohort"]["clinical"])
    binary = [ep["column"] for ep in cfg["endpoints"].values() if ep["type"] == "binary"]

    parts = [
        section("flow", "Cohort flow", cohort_flow(cases, excluded)),
        section(
            "data",
            "Features and missing values",
            feature_table_section(
                list(inputs.get("columns", [])),
                [json.loads(Path(p).read_text()) for p in inputs["cards"]],
            ),
        ),
        section(
            "table1",
            "Table 1: clinical characteristics",
            table_one(cases, clinical, binary[0] if binary else None),
        ),
        section(
            "qc",
            "Preprocessing quality control",
            qc_section(list(inputs["qc"]))
            + normalisation_figures(
                list(inputs.get("normalisation", [])),
                dict(zip(cases["case_id"].astype(str), cases["center"].astype(str), strict=True)),
            ),
        ),
        section(
            "segmentation",
            "Segmentation agreement",
            segmentation_section(list(inputs.get("segmentation", []))),
        ),
        section(
            "icc",
            "Reproducibility across readers (ICC)",
            icc_section(icc, cfg["reproducibility"]["threshold"]),
        ),
        section(
            "combat",
            "Harmonisation across centers (ComBat)",
            combat_section(combat, raw, harm, _loco_metrics(inputs)),
        ),
    ]
    models, null_failed = "", []
    searches = inputs.get("searches") or [None] * len(inputs["cards"])
    for card_p, met_p, cur_p, sel_p, search_p in zip(
        inputs["cards"],
        inputs["metrics"],
        inputs["curves"],
        inputs["selections"],
        searches,
        strict=True,
    ):
        card = json.loads(Path(card_p).read_text())
        sel = pd.read_csv(sel_p, sep="\t") if Path(sel_p).stat().st_size > 1 else pd.DataFrame()
        met = pd.read_csv(met_p, sep="\t")
        null_failed += null_check_failures(card["endpoint"], card["model"], met)
        models += model_section(
            card["endpoint"],
            card["model"],
            card,
            met,
            pd.read_parquet(cur_p),
            sel,
            pd.read_parquet(search_p) if search_p else None,
        )
    parts.append(section("models", "Models and evaluation", models))
    sels = [pd.read_csv(p, sep="\t") for p in inputs["selections"] if Path(p).stat().st_size > 1]
    parts.append(
        section(
            "features",
            "Selected features",
            selected_features_section(raw, cases, sels, list(cfg["cohort"]["descriptors"])),
        )
    )
    parts.append(
        section(
            "checklist",
            "Checklist (CLEAR-style)",
            checklist(cfg, int((cases["split"] == "train").sum())),
        )
    )
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in [
            ("flow", "Cohort"),
            ("data", "Features"),
            ("table1", "Table 1"),
            ("qc", "QC"),
            ("segmentation", "Segmentation"),
            ("icc", "ICC"),
            ("combat", "ComBat"),
            ("models", "Models"),
            ("features", "Features"),
            ("checklist", "Checklist"),
        ]
    )
    title = html.escape(cfg["study"]["name"])
    desc = html.escape(cfg["study"]["description"])
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}: radstudy report</title><style>{CSS}</style></head><body>"
        f"<h1>{title}</h1>{null_banner(null_failed)}<p>{desc}</p><nav>{nav}</nav>{''.join(parts)}"
        f"<p class='note'>radstudy {__version__}</p></body></html>\n"
    )
    Path(out_html).parent.mkdir(parents=True, exist_ok=True)
    Path(out_html).write_text(page)
