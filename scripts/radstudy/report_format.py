"""Numbers and tables of the HTML report: per-column number formats, and tables that
fit the page (a scroll container of their own), sort on a header click, fold away
when long and download as TSV."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

#: tables with more rows than this are folded (a <details> the reader opens)
COLLAPSE_ROWS = 12

#: a click on a header sorts the table by that column (numbers as numbers);
#: inlined once per report, so the page needs nothing from the network
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('thead th').forEach(function(th,i){
  th.title='sort';th.addEventListener('click',function(){
   var b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.dir!=='asc';
   t.querySelectorAll('thead th').forEach(function(h){delete h.dataset.dir});
   th.dataset.dir=asc?'asc':'desc';
   var key=function(r){var c=r.cells[i];var s=c?c.textContent.trim():'';
    var n=parseFloat(s.replace(/[<,]/g,''));return isNaN(n)?s.toLowerCase():n};
   rows.sort(function(a,b){var x=key(a),y=key(b);
    if(typeof x!==typeof y){x=String(x);y=String(y)}
    return (x<y?-1:x>y?1:0)*(asc?1:-1)});
   rows.forEach(function(r){b.appendChild(r)});});});});
"""


def sig(v, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, never in scientific notation (6712.3 ->
    6710, 0.71234 -> 0.712); "" for a missing value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    v = float(v)
    if v == 0:
        return "0"
    r = round(v, digits - 1 - math.floor(math.log10(abs(v))))
    mag = math.floor(math.log10(abs(r))) if r else 0  # after rounding: 99.96 -> 100
    return f"{r:.{max(digits - 1 - mag, 0)}f}"


def fmt_p(p) -> str:
    """A p-value: 3 significant digits, "<0.001" below."""
    if p is None or pd.isna(p):
        return ""
    return "<0.001" if float(p) < 0.001 else sig(p)


def fmt_ci(value, low, high, decimals: int = 2) -> str:
    """An estimate with its interval: ``0.71 (0.64 to 0.78)``; the estimate alone
    without an interval."""
    if value is None or pd.isna(value):
        return ""
    out = f"{value:.{decimals}f}"
    if low is not None and high is not None and pd.notna(low) and pd.notna(high):
        out += f" ({low:.{decimals}f} to {high:.{decimals}f})"
    return out


def format_column(s: pd.Series) -> pd.Series:
    """A column as text: integers as integers, other numbers to 3 significant digits
    (p-value columns, named p..., as :func:`fmt_p`), text as it is."""
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        return s.map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    vals = s.astype(float)
    finite = vals[np.isfinite(vals)]
    if re.fullmatch(r"(p|p[ _-].*|.*[ _-]p|p-?value|pval)", str(s.name).lower()):
        return vals.map(fmt_p)
    if len(finite) and (finite == np.round(finite)).all() and finite.abs().max() < 1e15:
        return vals.map(lambda v: f"{v:.0f}" if np.isfinite(v) else "")
    return vals.map(sig)


def format_frame(df: pd.DataFrame, index: bool = False) -> pd.DataFrame:
    """Every column formatted by :func:`format_column` (the index too with ``index``)."""
    out = df.reset_index() if index else df.copy()
    out.columns = [
        " ".join(str(c) for c in col if str(c)) if isinstance(col, tuple) else str(col)
        for col in out.columns
    ]
    out = out.loc[:, ~pd.Index(out.columns).duplicated()]
    for col in out.columns:
        out[col] = format_column(out[col])
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "table"


def table_html(
    df: pd.DataFrame | None,
    index: bool = False,
    name: str = "table",
    collapse: int = COLLAPSE_ROWS,
    formatted: bool = False,
) -> str:
    """A DataFrame as a sortable HTML table inside its own scroll container (never
    wider than the page), numbers formatted per column, a TSV download link, folded
    into <details> when it has more than ``collapse`` rows. ``formatted``: the cells
    are text already."""
    if df is None or len(df) == 0:
        return '<p class="note">(none)</p>'
    shown = df.reset_index() if index and formatted else df
    shown = shown.astype(str) if formatted else format_frame(df, index=index)
    body = shown.to_html(index=False, border=0, na_rep="", escape=True, classes="sortable")
    # long snake_case headers may break after an underscore (the table fits the page)
    head, _, rest = body.partition("</thead>")
    # an interval "(0.64 to 0.78)" stays on one line; a cell may break before it
    rest = re.sub(r"\((\S+) to (\S+)\)", r"(\1&nbsp;to&nbsp;\2)", rest)
    body = head.replace("_", "_<wbr>") + "</thead>" + rest
    tsv = base64.b64encode(shown.to_csv(sep="\t", index=False).encode()).decode()
    fname = _slug(name) + ".tsv"
    link = (
        f'<a class="tsv" download="{fname}" '
        f'href="data:text/tab-separated-values;base64,{tsv}">TSV</a>'
    )
    block = f'<div class="tbl">{body}</div>{link}'
    if len(shown) > collapse:
        block = (
            f"<details><summary>{html.escape(name)}: {len(shown)} rows (show)</summary>"
            f"{block}</details>"
        )
    return block


#: a report's figure folder index: file stem -> caption (radstudy.report_figures)
CAPTIONS = "captions.tsv"


def figure_label(folder: str | Path, stem: str) -> dict[str, str]:
    """snakemake --report's labels of one report figure: its file stem and the caption
    the report gives it (from the folder's :data:`CAPTIONS`; "" when not listed)."""
    index = Path(folder) / CAPTIONS
    rows = index.read_text(encoding="utf-8").splitlines()[1:] if index.is_file() else []
    captions = dict(r.split("\t", 1) for r in rows if "\t" in r)
    # Snakemake fills {wildcards} into label values: no braces in a caption
    caption = captions.get(stem, "").replace("{", "(").replace("}", ")")
    return {"figure": stem, "caption": caption}
