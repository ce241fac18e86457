"""The report's first block: what was studied and what was found. The cohorts (n,
events, centers), the headline model per endpoint (best internal-CV AUC / C-index)
with its metric and 95% CI per cohort (external centers one by one, then pooled), a
forest plot of that metric over cohorts and models, and one plain-words status line
per check (null check, center predictability after harmonisation, calibration slope,
proportional hazards)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from radstudy.report_figures import cohort_title, forest_plot, panel_cohorts
from radstudy.report_format import fmt_ci, table_html

#: calibration slope inside this band reads as "well calibrated"
SLOPE_OK = (0.8, 1.2)


def headline_metric(metrics: pd.DataFrame) -> str:
    return "auc" if (metrics["metric"] == "auc").any() else "c_index"


def metric_rows(models: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """model, cohort, value, ci_low, ci_high of each model's headline metric in the
    cohorts the report shows (see :func:`panel_cohorts`)."""
    rows = []
    for model, m in models.items():
        if not len(m):
            continue
        name = headline_metric(m)
        d = m[m["metric"] == name]
        for cohort in panel_cohorts(d["cohort"].unique()):
            r = d[d["cohort"] == cohort].iloc[0]
            rows.append(
                {
                    "model": model,
                    "cohort": cohort,
                    "value": r["value"],
                    "ci_low": r.get("ci_low", np.nan),
                    "ci_high": r.get("ci_high", np.nan),
                    "n": r.get("n", np.nan),
                }
            )
    return pd.DataFrame(rows, columns=["model", "cohort", "value", "ci_low", "ci_high", "n"])


def headline_model(models: dict[str, pd.DataFrame]) -> str | None:
    """The model with the best internal-CV headline metric (ties: config order)."""
    rows = metric_rows(models)
    cv = rows[rows["cohort"] == "cv"].dropna(subset=["value"])
    if not len(cv):
        return next(iter(models), None)
    return str(cv.loc[cv["value"].idxmax(), "model"])


def cohort_table(cases: pd.DataFrame, endpoints: dict) -> pd.DataFrame:
    """Per split: cases, centers and events per endpoint (binary: label 1; survival:
    events)."""
    rows = []
    for split in [s for s in ("train", "test", "external") if s in set(cases["split"])] + sorted(
        set(cases["split"]) - {"train", "test", "external"}
    ):
        d = cases[cases["split"] == split]
        row = {
            "cohort": split,
            "n": len(d),
            "centers": ", ".join(sorted(d["center"].astype(str).unique())),
        }
        for ep, spec in endpoints.items():
            col = spec["column"] if spec["type"] == "binary" else spec["event"]
            if col in d.columns:
                row[f"{ep} events"] = int(pd.to_numeric(d[col], errors="coerce").eq(1).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _status(ok: bool | None, text: str) -> str:
    cls, word = {True: ("ok", "OK"), False: ("warn", "Check"), None: ("note", "n/a")}[ok]
    return f"<li class='{cls}'><b>{word}</b>: {text}</li>"


def null_status(models: dict[tuple[str, str], pd.DataFrame]) -> str:
    failed, checked, unbanded = [], 0, []
    for (ep, model), m in models.items():
        d = m[(m["cohort"] == "cv_shuffled") & (m["metric"] == "null_check_pass")]
        if len(d):
            checked += 1
            if (d["value"] == 0).any():
                failed.append(f"{ep} / {model}")
        else:
            auc = m[(m["cohort"] == "cv_shuffled") & (m["metric"] == "auc")]["value"]
            unbanded += [f"{ep} / {model} {v:.2f}" for v in auc]
    if not checked and unbanded:
        return _status(
            None,
            "null check: shuffled-label CV AUC "
            + html.escape(", ".join(unbanded))
            + " (should be near 0.5; this run recorded no null band to judge it by)",
        )
    if not checked:
        return _status(None, "null check (shuffled labels): not run")
    if failed:
        return _status(
            False,
            "null check: with shuffled labels "
            + html.escape(", ".join(failed))
            + " still discriminate; leakage or a broken model until explained",
        )
    return _status(
        True,
        f"null check: with shuffled labels all {checked} models checked fall to chance "
        "(no sign of leakage)",
    )


def center_status(combat: dict) -> str:
    pred = combat.get("center_predictability") or {}
    after = (pred.get("forest") or {}).get("after")
    if after is None:
        after = combat.get("center_auc_after")
    if after is None or not np.isfinite(after):
        return _status(None, "center predictability after harmonisation: not measured")
    ok = abs(after - 0.5) < 0.2
    words = (
        "the centers can hardly be told apart any more"
        if ok
        else "the centers can still be told apart (center signal left in the features)"
    )
    return _status(ok, f"center predictability after harmonisation: AUC {after:.2f}, {words}")


def calibration_status(ep: str, model: str, m: pd.DataFrame) -> str:
    d = m[m["metric"] == "calibration_slope"].set_index("cohort")["value"]
    cohorts = [c for c in panel_cohorts(d.index) if c != "loco"]
    if not cohorts:
        return ""
    bad = [c for c in cohorts if not SLOPE_OK[0] <= d[c] <= SLOPE_OK[1]]
    shown = ", ".join(f"{cohort_title(c)} {d[c]:.2f}" for c in cohorts)
    if bad:
        words = (
            "predictions too extreme (slope < 1: overfit)"
            if any(d[c] < 1 for c in bad)
            else ("predictions too moderate (slope > 1)")
        )
        return _status(False, f"calibration slope of {ep} / {model}: {shown}; {words}")
    return _status(True, f"calibration slope of {ep} / {model}: {shown} (ideal 1)")


def ph_status(ep: str, model: str, card: dict) -> str:
    ph = pd.DataFrame(card.get("ph_test") or {})
    if not len(ph):
        return ""
    bad = ph[ph["p"] < 0.05]
    if len(bad):
        names = ", ".join(html.escape(str(c)) for c in bad["covariate"])
        return _status(
            False,
            f"proportional hazards of {ep} / {model}: violated for {names} (p < 0.05); "
            "hazard ratios average over time",
        )
    return _status(
        True,
        f"proportional hazards of {ep} / {model}: no covariate violates it "
        f"(smallest p = {ph['p'].min():.2f})",
    )


def summary_block(
    cfg: dict,
    cases: pd.DataFrame,
    combat: dict,
    metrics: dict[tuple[str, str], pd.DataFrame],
    cards: dict[tuple[str, str], dict],
    colors: dict[str, str],
    banner: str = "",
) -> str:
    """The summary <section id="summary"> that opens the report (``banner``: an alarm
    shown first in it)."""
    body = banner + "<p>" + html.escape(cfg["study"].get("description", "")) + "</p>"
    body += "<h3>Cohorts</h3>" + table_html(
        cohort_table(cases, cfg.get("endpoints", {})), name="cohorts"
    )
    checks = [null_status(metrics), center_status(combat)]
    for ep in dict.fromkeys(e for e, _ in metrics):
        models = {m: met for (e, m), met in metrics.items() if e == ep}
        best = headline_model(models)
        if best is None:
            continue
        rows = metric_rows(models)
        name = "AUC" if headline_metric(models[best]) == "auc" else "C-index"
        mine = rows[rows["model"] == best]
        table = pd.DataFrame(
            {
                "cohort": [cohort_title(c) for c in mine["cohort"]],
                "n": mine["n"].to_numpy(),
                f"{name} (95% CI)": [
                    fmt_ci(r.value, r.ci_low, r.ci_high) for r in mine.itertuples()
                ],
            }
        )
        body += (
            f"<h3>{html.escape(ep)}: headline model <span class='model' style='color:"
            f"{colors.get(best, '#222')}'>{html.escape(best)}</span></h3>"
            f"<p class='note'>Of the {len(models)} models, the one with the best internal "
            f"cross-validated {name}; external centers one by one first, pooled after.</p>"
            + table_html(table, name=f"{ep} headline")
            + forest_plot(rows, {m: colors[m] for m in models}, ep, name)
        )
        checks.append(calibration_status(ep, best, models[best]))
        checks.append(ph_status(ep, best, cards.get((ep, best), {})))
    body += "<h3>Checks</h3><ul class='checks'>" + "".join(c for c in checks if c) + "</ul>"
    return f"<section id='summary'><h2>Summary</h2>{body}</section>"
