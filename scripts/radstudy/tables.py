"""Feature tables: assemble per-case outputs into per-center tables.

Wide tables are indexed by ``case_id`` (sorted) with the meta columns
``center`` and ``split`` and feature columns named by group (docs/CONTRACTS.md):
``{seq}__{pyradiomics name}`` (radiomics), ``{seq}__deep_{arch}_{i}`` (deep),
``clinical__{column}`` (clinical).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from radstudy.errors import ConfigError
from radstudy.tableio import numeric, read_table, sort_cases

log = logging.getLogger(__name__)

META = ("center", "split")


def column_group(col: str) -> str:
    """Group of a feature column: 'meta', 'missing', 'clinical', 'deep' or 'radiomics'."""
    if col in META:
        return "meta"
    if col.startswith("missing__"):  # 0/1 gap indicators (radstudy.impute)
        return "missing"
    if col.startswith("clinical__"):
        return "clinical"
    if "__deep_" in col:
        return "deep"
    return "radiomics"


def feature_groups(columns: Iterable[str]) -> dict[str, list[str]]:
    """Map each group name to its columns (meta columns left out)."""
    groups: dict[str, list[str]] = {}
    for col in columns:
        g = column_group(col)
        if g != "meta":
            groups.setdefault(g, []).append(col)
    return groups


def write_feature_row(row: pd.DataFrame, out_parquet: str | Path) -> None:
    """One case's features (a one-row wide table) as a tidy long table
    (case_id, feature, value); :func:`read_feature_row` reads it back.

    Not as one row of thousands of columns: parquet keeps metadata per column, so a
    2,060-column single-row file is 1.7 MB and takes ~0.1 s to read (the center
    tables read hundreds); the long file is a few dozen kB.
    """
    Path(out_parquet).parent.mkdir(parents=True, exist_ok=True)
    (case,) = row.index
    long = pd.DataFrame(
        {
            "case_id": pd.Series([str(case)] * row.shape[1], dtype=object),
            "feature": pd.Series(list(row.columns), dtype=object),
            "value": row.iloc[0].to_numpy(float),
        }
    )
    long.to_parquet(out_parquet, index=False)


def read_feature_row(path: str | Path) -> pd.DataFrame:
    """A per-case feature file (long: case_id, feature, value) as one wide row
    indexed by case_id, columns in file order (sorted when written), float64."""
    long = pd.read_parquet(path)
    cases = long["case_id"].unique()
    if len(cases) != 1:
        raise ValueError(f"{path}: expected the features of one case, found {len(cases)}")
    values = long["value"].to_numpy(float)[None, :]
    return pd.DataFrame(
        values, index=pd.Index([str(cases[0])], name="case_id"), columns=list(long["feature"])
    )


def read_batches(batches: Iterable[tuple[str | Path, str | Path]]):
    """The feature batches of rule extract_radiomics: ``(parquet, excluded TSV)`` pairs.

    Returns (long table: case_id, reader, feature, value; exclusions: case_id,
    reader, reason), each in the order the batches are given.
    """
    longs, excls = [], []
    for parquet, excluded in batches:
        longs.append(pd.read_parquet(parquet))
        excls.append(pd.read_csv(excluded, sep="\t", dtype=str, keep_default_na=False))
    cols = ["case_id", "reader", "feature", "value"]
    long = pd.concat(longs, ignore_index=True) if longs else pd.DataFrame(columns=cols)
    excl = (
        pd.concat(excls, ignore_index=True)
        if excls
        else pd.DataFrame(columns=["case_id", "reader", "reason"])
    )
    return long, excl


def _first_reasons(excl: pd.DataFrame, reader: str) -> dict[str, str]:
    """case -> the first reason that excludes ``reader`` of that case."""
    rows = excl[excl["reader"] == reader]
    return dict(rows.drop_duplicates("case_id")[["case_id", "reason"]].itertuples(False, None))


def read_case_features(
    batches: Iterable[tuple[str | Path, str | Path]], cases: Iterable[str], reader: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One reader's features of ``cases`` from feature batches (every sequence).

    A case is kept only if no batch excludes it for ``reader``. Returns (wide
    table indexed by case_id, columns sorted; exclusions with columns case_id,
    stage, reason: the first reason in the order the batches are given).
    """
    batches = list(batches)
    long, excl = read_batches(batches)
    reasons = _first_reasons(excl, reader)
    long = long[long["reader"] == reader]
    have = set(long["case_id"])
    keep, excluded = [], []
    for case in sorted(cases):
        if case in reasons:
            excluded.append({"case_id": case, "stage": "processing", "reason": reasons[case]})
        elif case in have:
            keep.append(case)
        else:
            raise ValueError(
                f"case {case}: no features of reader {reader} and no exclusion in "
                f"{', '.join(str(p) for p, _ in batches)}"
            )
    long = long[long["case_id"].isin(keep)]
    table = long.pivot(index="case_id", columns="feature", values="value").astype("float64")
    table = table.reindex(index=pd.Index(keep, name="case_id"))
    table.columns.name = None
    excl_df = pd.DataFrame(excluded, columns=["case_id", "stage", "reason"])
    return table, excl_df


def with_clinical(table: pd.DataFrame, sheet: pd.DataFrame, clinical: list[str]) -> pd.DataFrame:
    """Add meta columns and ``clinical__*`` columns from the sheet rows; sort."""
    sheet = sheet.set_index("case_id")
    out = table.copy()
    out.insert(0, "split", sheet.loc[out.index, "split"].astype(str))
    out.insert(0, "center", sheet.loc[out.index, "center"].astype(str))
    for col in clinical:
        out[f"clinical__{col}"] = pd.to_numeric(sheet.loc[out.index, col]).astype(float)
    meta = [c for c in META if c in out.columns]
    feats = sorted(c for c in out.columns if c not in META)
    return sort_cases(out[meta + feats])


def join_center_tables(
    table: pd.DataFrame, excl: pd.DataFrame, tables: Iterable[tuple[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join per-center feature tables (e.g. deep features) on case_id.

    ``tables``: (parquet, excluded TSV with case_id + reason) pairs. A case listed as
    excluded, or missing from a table, is dropped and recorded in ``excl``.
    """
    frames = [excl]
    for parquet, excluded in tables:
        part = pd.read_parquet(parquet)
        reasons = pd.read_csv(excluded, sep="\t", dtype=str).set_index("case_id")["reason"]
        for case in sorted(set(table.index) - set(part.index)):
            why = reasons.get(case, f"no row in {parquet}")
            frames.append(pd.DataFrame([{"case_id": case, "stage": "processing", "reason": why}]))
        table = table.join(part, how="inner")
    excl = pd.concat(frames, ignore_index=True).drop_duplicates("case_id")
    return table, excl


def assemble_center(
    sheet_tsv: str | Path,
    batches: Iterable[tuple[str | Path, str | Path]],
    reader: str,
    clinical: list[str],
    out_table: str | Path,
    out_excluded: str | Path,
    center_tables: Iterable[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Build one center's wide table from its feature batches (``reader``'s features,
    every sequence) and per-center tables such as the deep features (see
    :func:`join_center_tables`)."""
    sheet = pd.read_csv(sheet_tsv, sep="\t", dtype={"case_id": str, "center": str})
    table, excl = read_case_features(batches, sheet["case_id"], reader)
    table, excl = join_center_tables(table, excl, center_tables)
    table = with_clinical(table, sheet, clinical)
    table = table.apply(lambda s: s.astype(float) if s.name not in META else s)
    Path(out_table).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_table)
    excl.insert(1, "center", sheet.set_index("case_id").loc[excl["case_id"], "center"].values)
    sort_cases(excl, "case_id").to_csv(out_excluded, sep="\t", index=False)
    return table


def read_feature_table(path: str | Path, id_column: str = "case_id") -> pd.DataFrame:
    """A feature table in any format :func:`radstudy.tableio.read_table` reads, every
    cell as text, indexed by its id column (``cohort.id_column``) as ``case_id``."""
    df = read_table(path, "feature table")
    if id_column not in df.columns:
        raise ConfigError(
            f"feature table {path}: no id column '{id_column}' (config key cohort.id_column)"
        )
    ids = df[id_column]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 2
        raise ConfigError(f"feature table {path}: row {row} has no {id_column}")
    dup = ids[ids.duplicated()].tolist()
    if dup:
        raise ConfigError(f"feature table {path}: duplicated {id_column}(s) {', '.join(dup[:5])}")
    return df.set_index(id_column).rename_axis("case_id")


def column_roles(
    columns: Iterable[str], non_features: Iterable[str], features: list[str], ignore: list[str]
) -> dict[str, str]:
    """Role of each feature-table column: 'sheet' (id, meta, outcome, clinical, ...:
    ``non_features``), 'ignored' (``ignore`` patterns), 'feature' (``features``
    patterns; ``clinical__`` columns are the sheet's), or 'left out' (none of these)."""
    from fnmatch import fnmatchcase

    sheet = set(non_features) | set(META)
    roles = {}
    for col in columns:
        if col in sheet or col.startswith("clinical__"):
            roles[col] = "sheet"
        elif any(fnmatchcase(col, p) for p in ignore):
            roles[col] = "ignored"
        elif any(fnmatchcase(col, p) for p in features):
            roles[col] = "feature"
        else:
            roles[col] = "left out"
    return roles


def _shown(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def import_center(
    table_path: str | Path,
    sheet_tsv: str | Path,
    cohort: dict,
    non_features: list[str],
    out_table: str | Path,
    out_excluded: str | Path,
    out_columns: str | Path | None = None,
) -> pd.DataFrame:
    """One center's wide table from a feature table (the feature-table entry point).

    ``cohort``: the config's cohort block (id_column, feature_columns,
    ignore_columns, clinical). ``non_features``: the sheet's own names of the id,
    meta, outcome, fold, clinical and descriptor columns (the table may be the sheet
    itself). Feature columns are the ``feature_columns`` patterns' matches: a text
    one is an error naming it; the other columns are left out with one log line
    (``out_columns`` lists every column's role and how many of this center's cases
    have a value). Names without ``__`` become ``table__{name}``. Cases of the sheet
    without a row in the table are excluded with a reason.
    """
    sheet = pd.read_csv(sheet_tsv, sep="\t", dtype={"case_id": str, "center": str})
    table = read_feature_table(table_path, cohort["id_column"])
    roles = column_roles(
        table.columns, non_features, cohort["feature_columns"], cohort["ignore_columns"]
    )
    left_out = [c for c, r in roles.items() if r == "left out"]
    if left_out:
        log.warning(
            "%d column(s) of %s are not features (not matched by cohort.feature_columns "
            "%s) and are left out: %s",
            len(left_out),
            Path(table_path).name,
            cohort["feature_columns"],
            _shown(left_out),
        )
    feats = {}
    for col in (c for c, r in roles.items() if r == "feature"):
        values = numeric(table[col])
        if values is None:
            bad = table[col].notna() & pd.to_numeric(table[col], errors="coerce").isna()
            case = table.index[bad.to_numpy()][0]
            raise ConfigError(
                f"{table_path}: feature column '{col}' is not numeric (case {case}: "
                f"{table.loc[case, col]!r}); list it in cohort.ignore_columns or narrow "
                "cohort.feature_columns"
            )
        feats[col if "__" in col else f"table__{col}"] = values
    if not feats:
        raise ConfigError(
            f"{table_path}: no feature column matches cohort.feature_columns "
            f"{cohort['feature_columns']} (columns: {_shown(list(table.columns))}); "
            "use ['*'] for every column that is not an id, outcome or clinical column"
        )
    features = pd.DataFrame(feats, index=table.index)
    cases = list(sheet["case_id"])
    have = set(features.index)
    missing = [c for c in cases if c not in have]
    rows = features.loc[[c for c in cases if c in have]]
    rows = rows[sorted(rows.columns)]
    rows.index.name = "case_id"
    out = with_clinical(rows, sheet, cohort["clinical"])
    out = out.apply(lambda s: s.astype(float) if s.name not in META else s)
    Path(out_table).parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_table)
    center = sheet.set_index("case_id")["center"]
    excl = pd.DataFrame(
        {
            "case_id": missing,
            "center": [center[c] for c in missing],
            "stage": "import_center",
            "reason": f"no row in the feature table {Path(table_path).name}",
        }
    )
    excl.to_csv(out_excluded, sep="\t", index=False)
    if out_columns is not None:
        mine = table.loc[[c for c in cases if c in have]]
        pd.DataFrame(
            {
                "column": [cohort["id_column"], *roles],
                "role": ["id", *roles.values()],
                "n_values": [len(mine)] + [int(mine[c].notna().sum()) for c in roles],
                "n_cases": len(mine),
            }
        ).to_csv(out_columns, sep="\t", index=False, lineterminator="\n")
    return out


def assemble_readers(
    batches: Iterable[tuple[str | Path, str | Path]],
    cases: Iterable[str],
    readers: Iterable[str],
    out_table: str | Path,
) -> pd.DataFrame:
    """Long table for reproducibility: one row per (case_id, reader) of ``cases`` x
    ``readers`` from feature batches (every sequence); excluded pairs are skipped."""
    long, excl = read_batches(batches)
    cases = sorted(cases)
    frames = []
    for reader in sorted(readers):
        gone = set(_first_reasons(excl, reader))
        sub = long[(long["reader"] == reader) & long["case_id"].isin(cases)]
        sub = sub[~sub["case_id"].isin(gone)]
        if len(sub):
            wide = sub.pivot(index="case_id", columns="feature", values="value")
            wide.columns.name = None
            wide.insert(0, "reader", reader)
            frames.append(wide.astype({c: "float64" for c in wide.columns if c != "reader"}))
    empty = pd.DataFrame(columns=["reader"], index=pd.Index([], name="case_id"))
    out = (pd.concat(frames) if frames else empty).reset_index()
    feats = sorted(c for c in out.columns if c not in ("case_id", "reader"))
    out = out[["case_id", "reader", *feats]].sort_values(["case_id", "reader"])
    out = out.reset_index(drop=True)
    Path(out_table).parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_table)
    return out


def read_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate per-center wide tables, sorted by case_id."""
    frames = [pd.read_parquet(p) for p in paths]
    return sort_cases(pd.concat(frames))


def read_outcomes(sheets: Iterable[str | Path], endpoint: dict) -> pd.DataFrame | pd.Series:
    """Outcome of one endpoint from center sheets: 0/1 Series or time/event DataFrame."""
    sheet = (
        pd.concat([pd.read_csv(s, sep="\t", dtype={"case_id": str, "center": str}) for s in sheets])
        .set_index("case_id")
        .pipe(sort_cases)
    )
    if endpoint["type"] == "binary":
        return sheet[endpoint["column"]].rename("y")
    return sheet[[endpoint["time"], endpoint["event"]]].set_axis(["time", "event"], axis=1)


def read_column(sheets: Iterable[str | Path], column: str) -> pd.Series:
    """One sheet column (as text, missing as NaN) of every case of the center sheets."""
    frames = [pd.read_csv(s, sep="\t", dtype=str) for s in sheets]
    return pd.concat(frames).set_index("case_id")[column]


def collect_exclusions(paths: Iterable[str | Path], out: str | Path) -> pd.DataFrame:
    """Merge exclusion tables (sheet-level and per-center) into one sorted TSV."""
    frames = [pd.read_csv(p, sep="\t", dtype=str) for p in paths]
    frames = [f for f in frames if len(f)]
    cols = ["case_id", "center", "stage", "reason"]
    df = pd.concat(frames)[cols] if frames else pd.DataFrame(columns=cols)
    df = sort_cases(df, ["center", "case_id"]).reset_index(drop=True)
    df.to_csv(out, sep="\t", index=False, lineterminator="\n")
    return df
