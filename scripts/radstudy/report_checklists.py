"""Reporting checklists of the report: TRIPOD+AI and CLEAR, every official item listed
(radstudy/checklists/*.json), those the run knows filled with a short value and a
link to where the report shows it, the rest marked for the authors.

:func:`facts` says what the run knows (from the config, the cohort tables and the
model cards); :func:`checklist_html` lays one checklist out against those facts.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from radstudy import __version__
from radstudy.config import segmentation_label

CHECKLISTS = Path(__file__).parent / "checklists"
#: what an item the run cannot fill says
OPEN = "to be completed by the authors"
#: the checklists the report shows, in order (file stems under CHECKLISTS)
NAMES = ("tripod_ai", "clear")


def load(name: str) -> dict:
    """A checklist: name, title, source and its items (id, section, topic, fill)."""
    return json.loads((CHECKLISTS / f"{name}.json").read_text(encoding="utf-8"))


def _join(items: Iterable, empty: str = "none") -> str:
    items = [str(i) for i in items]
    return ", ".join(items) if items else empty


def _libraries(cards: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for card in cards:
        out.update(card.get("libraries") or {})
    return out


def facts(
    cfg: dict,
    cases: pd.DataFrame,
    excluded: pd.DataFrame,
    cards: list[dict],
    n_features: dict[str, int] | None = None,
    radiomics: dict | None = None,
) -> dict[str, tuple[str, list[str]]]:
    """What this run knows: key -> (short value, report anchors to link, best first);
    ``radiomics``: the pyradiomics params the features were extracted with
    (radstudy.features.load_params). A key absent from the result leaves its items to
    the authors."""
    c, ev = cfg["cohort"], cfg["evaluation"]
    p, feats = cfg["preprocess"], cfg["features"]
    images = not c.get("features_table")
    endpoints = cfg.get("endpoints", {})
    split = cases["split"].astype(str) if "split" in cases else pd.Series(dtype=str)
    counts = split.value_counts()
    order = [s for s in ("train", "test", "external") if s in counts] + sorted(
        s for s in counts.index if s not in ("train", "test", "external")
    )
    n_split = counts.reindex(order)
    centers = cases.groupby(cases["center"].astype(str))["split"].agg(
        lambda s: "/".join(sorted(set(map(str, s))))
    )
    libs = _libraries(cards)
    out: dict[str, tuple[str, list[str]]] = {}

    source = f"feature table {c['features_table']}" if not images else f"sheet {c['sheet']}"
    out["data_source"] = (
        f"{source}; {len(centers)} center(s): " + _join(f"{k} ({v})" for k, v in centers.items()),
        ["flow"],
    )
    out["setting"] = (
        f"{len(centers)} center(s): " + _join(f"{k} ({v})" for k, v in centers.items()),
        ["flow"],
    )
    rules = [f"{col} present" for col in c.get("require", [])] + list(c.get("inclusion", []))
    stages = (
        excluded.groupby("stage").size().to_dict() if len(excluded) and "stage" in excluded else {}
    )
    out["eligibility"] = (
        f"inclusion: {_join(rules, 'every case of the sheet')}; {len(cases)} included, "
        f"{len(excluded)} excluded"
        + (" (" + _join(f"{n} at {s}" for s, n in stages.items()) + ")" if stages else "")
        + ", each with its reason",
        ["flow"],
    )
    out["flow"] = (
        f"{len(cases)} included ({_join(f'{n} {s}' for s, n in n_split.items())}), "
        f"{len(excluded)} excluded with reasons",
        ["flow"],
    )
    events = []
    for ep, spec in endpoints.items():
        col = spec["column"] if spec["type"] == "binary" else spec["event"]
        if col not in cases:
            continue
        given = spec.get("positive")
        pos = str(given) if given not in (None, "") else "1"
        y = cases[col].astype(str).str.replace(r"\.0$", "", regex=True)
        if given in (None, ""):
            y = y.replace({"True": "1", "False": "0"})
        per = {s: int((y[split == s] == pos).sum()) for s in n_split.index}
        events.append(f"{ep}: {_join(f'{n} events in {s}' for s, n in per.items())}")
    out["sample_size"] = (
        f"{len(cases)} cases ({_join(f'{n} {s}' for s, n in n_split.items())}); "
        + "; ".join(events)
        + " (the study size itself: the authors)",
        ["summary", "table1"],
    )
    defs = []
    for ep, spec in endpoints.items():
        if spec["type"] == "binary":
            pos = spec.get("positive")
            defs.append(
                f"{ep}: binary, column {spec['column']}"
                + (f" (positive: {pos})" if pos not in (None, "") else "")
            )
        else:
            defs.append(f"{ep}: survival, time {spec['time']}, event {spec['event']}")
    out["outcome"] = ("; ".join(defs), ["table1", "models"])
    clinical = list(c.get("clinical", []))
    out["clinical"] = (f"clinical variables: {_join(clinical)}", ["table1"])
    groups = sorted({g for card in cards for g in card.get("groups", [])})
    out["predictors"] = (
        f"feature groups: {_join(groups)}"
        + (f"; sequences {_join(c['sequences'])}" if images else "")
        + f"; clinical: {_join(clinical)}",
        ["data", "features", "models"],
    )
    params = (radiomics or {}) if images else {}
    if images:
        radiomics = libs.get("pyradiomics-bhklab") or libs.get("pyradiomics")
        out["feature_extraction"] = (
            f"pyradiomics{' ' + radiomics if radiomics else ''} ({feats['mode']}), params "
            f"{feats['params']}, per sequence and reader mask",
            ["features", "qc"],
        )
        out["params_file"] = (
            f"every setting in params file {feats['params']}; pyradiomics defaults for the rest",
            ["features"],
        )
        if params:
            setting = params.get("setting") or {}
            bins = [f"{k} {setting[k]}" for k in ("binWidth", "binCount") if k in setting]
            out["discretization"] = (f"fixed {_join(bins, 'pyradiomics default')}", ["qc"])
            types = params.get("imageType") or {}
            out["image_types"] = (_join(types, "Original"), ["features"])
            classes = params.get("featureClass") or {}
            out["feature_classes"] = (_join(classes, "all pyradiomics classes"), ["features"])
        bias = "N4 bias field correction" if c["modality"] == "MRI" else f"HU {p['hu_window']}"
        if c["modality"] == "MRI" and not p.get("n4", {}).get("enabled", True):
            bias = "no bias field correction"
        out["preprocessing"] = (
            f"{c['modality']}: {bias}; resampled to {p['spacing']} mm ({p['interpolator']}, "
            f"masks nearest neighbour); {p['normalization']} normalisation; QC per case",
            ["qc"],
        )
        out["resampling"] = (
            f"{p['spacing']} mm, {p['interpolator']} interpolation, masks nearest neighbour",
            ["qc"],
        )
        out["imaging"] = (
            f"{c['modality']}, sequences {_join(c['sequences'])}; input spacing per case in "
            "the QC table (acquisition parameters: the authors)",
            ["qc"],
        )
        readers = list(c.get("readers", []))
        repeats = c.get("repeats") or {}
        out["readers"] = (
            f"readers {_join(readers)}"
            + (
                f" (repeat readings: {_join(f'{r} of {o}' for r, o in repeats.items())})"
                if repeats
                else ""
            )
            + "; their qualifications: the authors",
            ["segmentation", "icc"],
        )
        out["segmentation"] = (
            f"{segmentation_label(cfg['segmentation'])}; reference reader {c.get('reference_reader')}",
            ["segmentation", "icc"],
        )
    else:
        out["preprocessing"] = (
            f"features from the table {c['features_table']}; data checks per column",
            ["data"],
        )
    if n_features:
        out["n_features"] = (
            f"{sum(n_features.values())} ("
            + _join(f"{g}: {n}" for g, n in sorted(n_features.items()))
            + ")",
            ["features", "data"],
        )
    imp = cfg.get("imputation") or {}
    if imp:
        out["missing"] = (
            f"{imp['strategy']} imputation fitted on the training rows of every fit (each CV "
            f"fold too); features missing in > {imp['max_missing']:.0%} of training rows "
            f"dropped{'; missing indicators added' if imp.get('indicator') else ''}; cases "
            "without a required value excluded",
            ["data", "flow"],
        )
    h = cfg["harmonization"]
    out["harmonisation"] = (
        (
            "ComBat per center fitted on training rows ("
            + _join(f"{g}: {m}" for g, m in h["groups"].items())
            + ")"
            + (f"; covariates {_join(h['covariates'])}" if h.get("covariates") else "")
            if h["enabled"]
            else "no harmonisation"
        ),
        ["combat"],
    )
    r = cfg["reproducibility"]
    icc = (
        f"{r['icc_type']} ({_join(r['kinds'])}) >= {r['threshold']} on training cases"
        if r["enabled"]
        else "no ICC filter"
    )
    out["reliability"] = (
        icc + ("; Dice and volume agreement between mask sources" if images else ""),
        ["segmentation", "icc"],
    )
    sel = cfg.get("selection") or {}
    own = [
        f"{card['model']}: {_join(card['spec']['selection'], 'none')}"
        for card in cards
        if "selection" in (card.get("spec") or {})
    ]
    searched = [card["model"] for card in cards if "search" in (card.get("spec") or {})]
    out["selection"] = (
        f"{icc}; then, inside every CV fold: {_join(sel, 'no selection')}"
        + (f"; own steps of {'; '.join(own)}" if own else "")
        + (f"; chosen by the search: {_join(searched)}" if searched else ""),
        ["icc", "features"],
    )
    out["feature_statistics"] = (
        "ICC per feature; features selected per model",
        ["icc", "features", "models"],
    )
    scaled = any("scale" in (card.get("steps") or []) for card in cards)
    scale = "features standardised inside each fit" if scaled else "no feature scaling step"
    out["predictor_handling"] = (f"{out['harmonisation'][0]}; {scale}", ["combat", "models"])
    out["scaling"] = (
        (f"{p['normalization']} image normalisation; " if images else "") + scale,
        ["qc", "models"],
    )
    specs = [(card["endpoint"], card["model"], card.get("spec") or {}) for card in cards]

    def algo(spec: dict) -> str:
        if "search" in spec:
            return "automatic search"
        if "classifier" in spec:
            return spec["classifier"]["name"]
        if "cox" in spec:
            return "Cox"
        return "?"

    soft = [f"{k} {libs[k]}" for k in ("scikit-learn", "lifelines", "xgboost") if k in libs]
    if specs:
        out["model"] = (
            _join(f"{e} / {m}: {algo(s)}" for e, m, s in specs)
            + f" (radstudy {__version__}"
            + (", " + _join(soft) if soft else "")
            + ")",
            ["models"],
        )
        tuned = [m for _, m, s in specs if (s.get("classifier") or {}).get("grid")]
        searched = [m for _, m, s in specs if "search" in s]
        out["tuning"] = (
            f"fit on training rows; grids tuned by inner CV: {_join(tuned)}; searched "
            f"(nested in the outer CV): {_join(searched)}",
            ["models"],
        )
        smote = [m for _, m, s in specs if s.get("smote")]
        out["class_imbalance"] = (
            f"SMOTE inside each fit: {_join(smote)}"
            if smote
            else "no resampling; the decision threshold is fixed on the training predictions",
            ["models"],
        )
        clin = [m for _, m, s in specs if s.get("groups") == ["clinical"]]
        if clin:
            out["non_radiomic"] = (f"clinical-only model(s): {_join(clin)}", ["models"])
        out["model_specification"] = (
            "model cards and fitted models in results/models/{endpoint}/{model}/; selected "
            "features and weights per model",
            ["models", "features"],
        )
    cv = ev["cv"]
    parts = [f"{cv['n_splits']}-fold CV x {cv['n_repeats']} on training rows"]
    if (split == "test").any():
        parts.append("held-out test rows")
    if (split == "external").any():
        parts.append(
            "external centers "
            + _join(sorted(cases.loc[split == "external", "center"].astype(str).unique()))
        )
    if ev.get("loco"):
        parts.append("leave-one-center-out")
    out["validation"] = (_join(parts), ["models", "summary"])
    if ev.get("loco") or (split == "external").any():
        out["heterogeneity"] = (
            "performance per external center and per left-out center (leave-one-center-out)",
            ["models", "summary"],
        )
    kinds = {spec["type"] for spec in endpoints.values()}
    measures = []
    if "binary" in kinds:
        measures.append(
            "binary: AUC; sensitivity, specificity, PPV, NPV, accuracy at the fixed "
            "threshold; Brier score; calibration slope and intercept, calibration curves; "
            "decision curves (net benefit)"
        )
    if "survival" in kinds:
        measures.append(
            "survival: C-index; time-dependent AUC and Brier score; integrated Brier "
            "score; log-rank test and Kaplan-Meier curves of the risk groups"
        )
    out["performance"] = ("; ".join(measures), ["models"])
    out["uncertainty"] = (
        f"95% CIs ({ev['bootstrap']} bootstrap replicates; DeLong for the AUC)",
        ["models"],
    )
    out["performance_results"] = (
        "every model's metrics with 95% CIs per cohort; forest plot",
        ["summary", "models"],
    )
    out["model_output"] = (
        f"predicted probability (survival: risk score); threshold {ev['threshold']} fixed on "
        "the training out-of-fold predictions and applied unchanged; survival risk groups: "
        "training median",
        ["models"],
    )
    out["model_selection"] = (
        "every model reported; the headline model per endpoint: best internal-CV AUC / C-index",
        ["summary", "models"],
    )
    out["interpretability"] = (
        "feature weights of the final models; nomogram for Cox models",
        ["models", "features"],
    )
    out["characteristics"] = (
        "Table 1 by split and by outcome (tableone), with p-values",
        ["table1"],
    )
    out["differences"] = (
        "Table 1 by split compares development and evaluation cases; center predictability "
        "before and after harmonisation",
        ["table1", "combat"],
    )
    out["pipeline"] = (
        f"radstudy {__version__} Snakemake workflow: "
        + ("preprocessing, segmentation, feature extraction, " if images else "feature table, ")
        + "harmonisation, selection, models, evaluation",
        ["summary"],
    )
    out["guidelines"] = ("TRIPOD+AI and CLEAR (this section)", ["checklists"])
    return out


def checklist_html(checklist: dict, known: dict, anchors: set[str]) -> str:
    """One checklist as a table: item, section, topic, this run (value + link to the
    first anchor the report has), or the open mark."""
    rows = []
    for item in checklist["items"]:
        fill = item.get("fill")
        if fill in known:
            value, where = known[fill]
            link = next((a for a in where if a in anchors), None)
            cell = html.escape(value) + (
                f' (<a href="#{link}">{html.escape(link)}</a>)' if link else ""
            )
            cls = "filled"
        else:
            cell, cls = f"<i>{OPEN}</i>", "open"
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(str(item['id']))}</td>"
            f"<td>{html.escape(item['section'])}</td><td>{html.escape(item['topic'])}</td>"
            f"<td>{cell}</td></tr>"
        )
    n_open = sum(1 for i in checklist["items"] if i.get("fill") not in known)
    return (
        f"<h3 id='checklist-{html.escape(checklist['name'].lower().replace('+', ''))}'>"
        f"{html.escape(checklist['title'])}</h3>"
        f"<p class='note'>{len(checklist['items'])} items ({html.escape(checklist['source'])});"
        f" {len(checklist['items']) - n_open} filled from this run, {n_open} {OPEN}.</p>"
        "<div class='tbl'><table class='checklist'><thead><tr><th>item</th><th>section</th>"
        "<th>topic</th><th>this run</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def checklists_section(known: dict, anchors: set[str]) -> str:
    return "".join(checklist_html(load(n), known, anchors | {"checklists"}) for n in NAMES)
