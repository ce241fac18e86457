"""Figures of the HTML report as small multiples: one panel per cohort with the models
as series (at most :data:`MAX_SERIES` per axis), legends outside the data, one colour
per model everywhere, Kaplan-Meier with the number at risk under the axis, a forest
plot of the headline metric. Every figure is inlined as PNG and, when a folder is set
(:func:`figure_dir`), also written there as PNG + SVG."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from radstudy.report_format import CAPTIONS  # noqa: E402

#: series per axis at most (models, plus reference lines such as treat-all)
MAX_SERIES = 6
#: panels per figure row
PANELS_PER_ROW = 4
#: colour-blind safe (Okabe-Ito), one per model in config order
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
REFERENCE = "#888888"

_state: dict = {"dir": None, "n": 0, "captions": []}


@contextlib.contextmanager
def figure_dir(path: str | Path | None) -> Iterator[None]:
    """Write every figure made inside this block to ``path`` as PNG + SVG too
    (numbered in order: ``01_roc_recurrence.png``) and their captions to
    :data:`CAPTIONS` (stem, caption); the folder is emptied first."""
    old = dict(_state)
    if path is not None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for f in [*path.glob("*.png"), *path.glob("*.svg"), path / CAPTIONS]:
            f.unlink(missing_ok=True)
    _state.update(dir=path, n=0, captions=[])
    try:
        yield
        if path is not None:
            rows = "".join(f"{stem}\t{' '.join(c.split())}\n" for stem, c in _state["captions"])
            (path / CAPTIONS).write_text("file\tcaption\n" + rows, encoding="utf-8")
    finally:
        _state.update(old)


def _stem(name: str | None, caption: str) -> Path:
    """The next numbered file stem in the figure folder; its caption goes to the index."""
    _state["n"] += 1
    stem = f"{_state['n']:02d}_{_slug(name or caption)}"
    _state.setdefault("captions", []).append((stem, caption))
    return _state["dir"] / stem


def model_colors(models: list[str]) -> dict[str, str]:
    """One colour per model, fixed by the order models are listed in (config order)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(models))}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:50] or "figure"


def fig_html(fig, caption: str, alt: str | None = None, name: str | None = None) -> str:
    """Inline a matplotlib figure as a base64 PNG <figure> with alt text and caption
    (deterministic metadata); also PNG + SVG in the :func:`figure_dir` folder."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    if _state["dir"] is not None:
        stem = _stem(name, caption)
        stem.with_suffix(".png").write_bytes(buf.getvalue())
        with plt.rc_context({"svg.hashsalt": "radstudy", "svg.fonttype": "none"}):
            fig.savefig(
                stem.with_suffix(".svg"), format="svg", bbox_inches="tight", metadata={"Date": None}
            )
    plt.close(fig)
    return png_html(buf.getvalue(), caption, alt)


def png_html(
    png: bytes | str | Path, caption: str, alt: str | None = None, name: str | None = None
) -> str:
    """Inline PNG bytes (or a PNG file written by another rule, which also goes to the
    :func:`figure_dir` folder: a bitmap only, no SVG) as a base64 <figure>."""
    if not isinstance(png, bytes):
        png = Path(png).read_bytes()
        if _state["dir"] is not None:
            _stem(name, caption).with_suffix(".png").write_bytes(png)
    data = base64.b64encode(png).decode()
    return (
        f'<figure><img alt="{html.escape(alt or caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def legend_above(fig, handles, labels, ncol: int | None = None) -> None:
    """The figure's one legend, above the panels (never on the data)."""
    if not handles:
        return
    fig.legend(
        handles,
        labels,
        loc="outside upper center",
        ncol=ncol or min(len(labels), 4),
        fontsize=7,
        frameon=False,
    )


def legend_right(ax, **kw) -> None:
    """An axis' legend outside it, to its right."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False, **kw)


def panel_grid(n: int, w: float = 2.7, h: float = 2.5):
    """A figure of ``n`` panels, :data:`PANELS_PER_ROW` per row, room for a legend."""
    ncol = min(n, PANELS_PER_ROW)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(w * ncol, h * nrow + 0.5),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


#: cohorts shown as panels, in this order (train = apparent, cv_shuffled = the null,
#: loco:{center} = one fold of loco: they stay in the metrics tables)
def panel_cohorts(cohorts) -> list[str]:
    cohorts = set(cohorts)
    ext = sorted(c for c in cohorts if c.startswith("external:"))
    order = ["cv", "test", *ext, "external", "loco"]
    return [c for c in order if c in cohorts]


def cohort_title(cohort: str) -> str:
    names = {
        "cv": "internal CV",
        "test": "held-out test",
        "loco": "leave-one-center-out",
        "external": "external (pooled)",
        "train": "training (apparent)",
    }
    if cohort.startswith("external:"):
        return f"external center {cohort.split(':', 1)[1]}"
    return names.get(cohort, cohort)


_KINDS = {
    "roc": ("1 - specificity", "sensitivity", "ROC"),
    "calibration": ("predicted probability", "observed frequency", "Calibration"),
    "decision": ("threshold probability", "net benefit", "Decision curve"),
}


_CAPTIONS = {
    "roc": "ROC curves",
    "calibration": "calibration curves",
    "decision": "decision curves",
}


def curve_panels(
    curves: dict[str, pd.DataFrame], kind: str, colors: dict[str, str], endpoint: str
) -> str:
    """Small multiples of one curve kind for an endpoint: a panel per cohort, the models
    (``curves``: model -> curves table) as series; more models than fit on one axis go
    to further figures. Decision curves add treat-all / treat-none per panel."""
    xlabel, ylabel, title = _KINDS[kind]
    parts = {m: c[c["kind"] == kind] for m, c in curves.items()}
    parts = {m: p for m, p in parts.items() if len(p)}
    if not parts:
        return ""
    cohorts = panel_cohorts({c for p in parts.values() for c in p["cohort"].unique()})
    if not cohorts:
        return ""
    refs = 2 if kind == "decision" else 1  # treat-all + treat-none, or the diagonal
    out = ""
    groups = chunks(list(parts), MAX_SERIES - refs)
    for gi, models in enumerate(groups):
        fig, axes = panel_grid(len(cohorts))
        ymax = 0.05
        for ax, cohort in zip(axes, cohorts, strict=True):
            for model in models:
                d = parts[model]
                d = d[(d["cohort"] == cohort) & (d["series"].isin(["", "model"]))]
                if len(d):
                    ax.plot(d["x"], d["y"], color=colors[model], lw=1.4, label=model)
                    ymax = max(ymax, float(np.nanmax(d["y"])))
            if kind == "decision":
                ref = next(iter(parts.values()))
                ref = ref[ref["cohort"] == cohort]
                for series, style in (("treat_all", "--"), ("treat_none", ":")):
                    r = ref[ref["series"] == series]
                    if len(r):
                        ax.plot(r["x"], r["y"], style, color=REFERENCE, lw=1, label=series)
            elif kind in ("roc", "calibration"):
                ax.plot([0, 1], [0, 1], color=REFERENCE, lw=0.8, ls=":")
            ax.set_title(cohort_title(cohort), fontsize=8)
            ax.tick_params(labelsize=7)
        if kind == "decision":
            axes[0].set_ylim(-0.05, ymax * 1.1)
        fig.supxlabel(xlabel, fontsize=8)
        fig.supylabel(ylabel, fontsize=8)
        handles, labels = {}, {}
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, h)
        labels = list(handles)
        legend_above(fig, [handles[k] for k in labels], labels)
        part = f" (models {gi + 1} of {len(groups)})" if len(groups) > 1 else ""
        out += fig_html(
            fig,
            f"{endpoint}: {_CAPTIONS[kind]} per cohort, one line per model{part}",
            alt=f"{title} curves of the {endpoint} models, one panel per cohort: "
            + ", ".join(cohort_title(c) for c in cohorts),
            name=f"{kind}_{endpoint}_{gi + 1}",
        )
    return out


def km_panels(pred: pd.DataFrame, model: str, endpoint: str) -> str:
    """Kaplan-Meier by risk group (cutoff: the training median), one panel per cohort
    (training, test, each external center), number at risk under each axis."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    need = {"time", "event", "risk_group", "split"}
    if pred is None or not len(pred) or not need <= set(pred.columns):
        return ""
    cohorts = []
    for split in ("train", "test"):
        if (pred["split"] == split).any():
            cohorts.append((split, pred[pred["split"] == split]))
    ext = pred[pred["split"] == "external"]
    for center in sorted(ext["center"].astype(str).unique()) if len(ext) else []:
        cohorts.append((f"external:{center}", ext[ext["center"].astype(str) == center]))
    if not cohorts:
        return ""
    out = ""
    for gi, group in enumerate(chunks(cohorts, 3)):
        fig, axes = plt.subplots(1, len(group), figsize=(3.6 * len(group), 3.6), squeeze=False)
        axes = axes[0]
        fig.subplots_adjust(wspace=0.35)
        all_fits = []
        for ax, (cohort, d) in zip(axes, group, strict=True):
            fits = []
            for grp, color in (("low", "#0072B2"), ("high", "#D55E00")):
                g = d[d["risk_group"] == grp]
                if not len(g):
                    continue
                kmf = KaplanMeierFitter(label=f"{grp} risk").fit(g["time"], g["event"])
                kmf.plot_survival_function(ax=ax, ci_show=False, color=color, lw=1.4, legend=False)
                fits.append(kmf)
            all_fits.append(fits)
            ax.set_title(cohort_title(cohort), fontsize=8)
            ax.set_xlabel("time", fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("event-free survival", fontsize=8)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=7, frameon=False,
                       bbox_to_anchor=(0.5, 1.06))  # fmt: skip
        # last: the counts are placed under the axis' final ticks
        for ax, fits in zip(axes, all_fits, strict=True):
            if fits:
                add_at_risk_counts(*fits, ax=ax, rows_to_show=["At risk"], fontsize=7)
        out += fig_html(
            fig,
            f"{endpoint} / {model}: Kaplan-Meier by risk group (cutoff = training median), "
            "number at risk under each panel",
            alt=f"Kaplan-Meier curves of the low and high risk groups of {model}, one panel "
            "per cohort: " + ", ".join(cohort_title(c) for c, _ in group),
            name=f"km_{endpoint}_{model}_{gi + 1}",
        )
    return out


def forest_plot(rows: pd.DataFrame, colors: dict[str, str], endpoint: str, metric: str) -> str:
    """Headline metric with 95% CI per cohort (rows) and model (colour). ``rows``:
    model, cohort, value, ci_low, ci_high."""
    rows = rows.dropna(subset=["value"])
    if not len(rows):
        return ""
    cohorts = panel_cohorts(rows["cohort"].unique())
    models = [m for m in colors if m in set(rows["model"])][:MAX_SERIES]
    if not cohorts or not models:
        return ""
    fig, ax = plt.subplots(figsize=(6.2, 0.32 * len(cohorts) * len(models) + 1.0))
    step = 0.8 / max(len(models), 1)
    for mi, model in enumerate(models):
        d = rows[rows["model"] == model].set_index("cohort")
        for ci, cohort in enumerate(cohorts):
            if cohort not in d.index:
                continue
            r = d.loc[cohort]
            y = ci + (mi - (len(models) - 1) / 2) * step
            lo, hi = r.get("ci_low"), r.get("ci_high")
            if pd.notna(lo) and pd.notna(hi):
                ax.plot([lo, hi], [y, y], color=colors[model], lw=1.2)
            ax.plot(r["value"], y, "o", color=colors[model], ms=4,
                    label=model if ci == 0 or cohort == cohorts[0] else None)  # fmt: skip
    ax.axvline(0.5, color=REFERENCE, lw=0.8, ls=":")
    ax.set_yticks(range(len(cohorts)), [cohort_title(c) for c in cohorts], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (95% CI)", fontsize=8)
    ax.tick_params(labelsize=7)
    handles, labels = {}, []
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
        if lab not in handles:
            handles[lab] = h
            labels.append(lab)
    ax.legend([handles[k] for k in labels], labels, loc="upper left", bbox_to_anchor=(1.02, 1),
              fontsize=7, frameon=False, title="model", title_fontsize=7)  # fmt: skip
    return fig_html(
        fig,
        f"{endpoint}: {metric} with 95% CI per cohort and model (dotted: 0.5, chance)",
        alt=f"Forest plot of the {metric} of every {endpoint} model in every cohort",
        name=f"forest_{endpoint}",
    )


def top_bars(values: pd.Series, n: int, xlabel: str, caption: str, name: str) -> str:
    """A horizontal bar chart of the ``n`` values largest in size (signed: colour)."""
    values = values.dropna()
    if not len(values):
        return ""
    top = values.reindex(values.abs().sort_values(ascending=False).index[:n])[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.26 * len(top) + 0.9))
    ax.barh([str(i)[:45] for i in top.index], top.to_numpy(),
            color=np.where(top.to_numpy() > 0, "#D55E00", "#0072B2"))  # fmt: skip
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    more = f" (top {len(top)} of {len(values)} by size)" if len(values) > len(top) else ""
    return fig_html(fig, caption + more, name=name)
