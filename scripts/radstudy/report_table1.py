"""Table 1 of the report, built by tableone: one table per grouping (by split, by each
outcome), coded levels shown with their labels from the config (report.clinical_labels),
skewed variables as median [Q1,Q3], missing counts, p-values where a test fits."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: a numeric variable with at most this many distinct integer values is categorical
MAX_LEVELS = 5
#: |skewness| above this: median [Q1,Q3] instead of mean (SD) (and a rank test)
SKEW = 1.0


def _code(v) -> str:
    """A level's code as text: 1.0 -> "1", "1" -> "1"."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.0f}" if f == round(f) else f"{f:g}"


def prepare(
    cases: pd.DataFrame, clinical: list[str], labels: dict | None = None
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The clinical columns ready for tableone: categorical ones (few integer levels,
    or labelled in ``labels``) as text with their labels; returns the frame, the
    categorical and the skewed (nonnormal) columns."""
    labels = {col: {_code(k): str(v) for k, v in m.items()} for col, m in (labels or {}).items()}
    data = pd.DataFrame(index=cases.index)
    categorical, nonnormal = [], []
    for col in clinical:
        if col not in cases.columns:
            continue
        x = pd.to_numeric(cases[col], errors="coerce")
        finite = x.dropna()
        is_int = len(finite) and (finite == np.round(finite)).all()
        given = cases[col].notna().sum()
        numeric_share = x.notna().sum() / given if given else 1.0  # all missing: numeric
        if col in labels or numeric_share < 1 or (is_int and finite.nunique() <= MAX_LEVELS):
            names = labels.get(col, {})
            codes = cases[col].map(lambda v: None if pd.isna(v) else _code(v))
            data[col] = codes.map(lambda c, names=names: None if c is None else names.get(c, c))
            categorical.append(col)
        else:
            data[col] = x
            if len(finite) > 2 and abs(finite.skew()) > SKEW:
                nonnormal.append(col)
    return data, categorical, nonnormal


def table_one(
    cases: pd.DataFrame,
    clinical: list[str],
    by: str,
    labels: dict | None = None,
    group_labels: dict | None = None,
):
    """tableone's TableOne of ``clinical`` grouped by column ``by`` (its missing-value
    column, overall column, p-values when each group has 2+ cases); None when there is
    nothing to tabulate."""
    from tableone import TableOne

    data, categorical, nonnormal = prepare(cases, clinical, labels)
    columns = list(data.columns)
    if not columns or by not in cases.columns:
        return None
    group = cases[by].map(lambda v: None if pd.isna(v) else _code(v))
    if group_labels:
        group = group.map(lambda c: group_labels.get(c, c))
    data[by] = group
    data = data[data[by].notna()]
    sizes = data[by].value_counts()
    if len(sizes) < 1:
        return None
    pval = bool(len(sizes) >= 2 and (sizes >= 2).all())

    def build(pval: bool):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return TableOne(
                data,
                columns=columns,
                categorical=categorical,
                nonnormal=nonnormal,
                groupby=by,
                pval=pval,
                htest_name=pval,
                missing=True,
                include_null=False,  # missing values counted in Missing, not as a level
                overall=True,
                decimals=1,
                pval_digits=3,
            )

    try:
        return build(pval)
    except ValueError as err:  # a test without data (one level, a group all missing)
        if not pval:
            raise
        log.warning("Table 1 by %s without p-values: %s", by, err)
        return build(False)


def flatten(t) -> pd.DataFrame:
    """A TableOne's table as a plain frame: variable and level columns, then tableone's
    own columns (Missing, Overall, one per group, P-Value, Test), cells as text."""
    df = t.tableone.copy()
    df.columns = [c[-1] if isinstance(c, tuple) else str(c) for c in df.columns]
    idx = df.index.to_frame(index=False)
    idx.columns = ["variable", "level"]
    # the variable name on its first row only, as tableone prints it
    idx["variable"] = idx["variable"].where(~idx["variable"].duplicated(), "")
    out = pd.concat([idx, df.reset_index(drop=True)], axis=1)
    return out.astype(str).replace({"nan": ""})
