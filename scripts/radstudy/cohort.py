"""The cohort sheet: load, validate, apply inclusion criteria, slice per center.

The sheet (TSV) has one row per case. Which columns it needs follows from the
config: an image column per sequence and a mask column per reader (named by the
templates ``cohort.image_column`` and ``cohort.mask_column``, by default
``image_{seq}`` and ``mask_{reader}``), clinical
columns and the outcome columns of every endpoint. Paths are relative to the
sheet's folder unless absolute. Every error names the row and the column and
stops the run before any job starts (:class:`ConfigError`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jsonschema import Draft7Validator

from radstudy.errors import ConfigError
from radstudy.tableio import read_table, sort_cases

SPLITS = ("train", "test", "external")


def image_column(cfg: dict, seq: str) -> str:
    """The sheet column of a sequence's image (``cohort.image_column``)."""
    return cfg["cohort"]["image_column"].format(seq=seq)


def mask_column(cfg: dict, reader: str) -> str:
    """The sheet column of a reader's mask (``cohort.mask_column``)."""
    return cfg["cohort"]["mask_column"].format(reader=reader)


def series_uid_column(cfg: dict, seq: str) -> str:
    """The sheet column holding a sequence's SeriesInstanceUID (``cohort.series``), or ""."""
    return ((cfg["cohort"].get("series") or {}).get(seq) or {}).get("uid_column", "")


def uid_columns(cfg: dict) -> list[str]:
    """SeriesInstanceUID columns of the sequences (read as text)."""
    return [c for c in (series_uid_column(cfg, s) for s in cfg["cohort"]["sequences"]) if c]


def dicom_settings(cfg: dict, seq: str, row=None) -> dict:
    """DICOM settings of one case x sequence for ``preprocess.prepare_case`` (its
    ``dicom`` key, read by radstudy.dicomio): the series rule of
    ``cohort.series[seq]`` with the row's SeriesInstanceUID, ``cohort.roi`` and
    ``cohort.uneven_slices``."""
    cohort = cfg["cohort"]
    rule = dict((cohort.get("series") or {}).get(seq) or {})
    column = rule.pop("uid_column", "")
    value = row.get(column) if column and row is not None else None
    if value is not None and not (isinstance(value, float) and np.isnan(value)):
        if str(value).strip():
            rule["uid"] = str(value).strip()
    return {
        "series": rule,
        "roi": dict(cohort.get("roi") or {}),
        "uneven_slices": cohort.get("uneven_slices", "error"),
    }


# image files SimpleITK reads; any other sheet path may be DICOM (a study folder,
# an RTSTRUCT or SEG file)
IMAGE_FILE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def may_be_dicom(path) -> bool:
    """A sheet path that is not an image file SimpleITK reads (by its suffix)."""
    return isinstance(path, str) and bool(path) and not path.lower().endswith(IMAGE_FILE_SUFFIXES)


def prepare_dicom_settings(cfg: dict, seq: str, row: dict, masks) -> dict:
    """What rule prepare_image reads of the DICOM settings for one case x sequence
    (``dicom_settings``, pruned): the series rule and ``uneven_slices`` only when
    the image is not an image file (a DICOM folder); ``roi`` patterns only of the
    ``masks`` (reader names, "organ") whose sheet path is not an image file. {} for
    a case of image files, so its params (and results) stay as they were and an
    edit of another sequence's or reader's DICOM settings reruns nothing here."""
    full = dicom_settings(cfg, seq, row)
    out: dict = {}
    if may_be_dicom(row.get(image_column(cfg, seq))):
        out = {"series": full["series"], "uneven_slices": full["uneven_slices"]}
    organ = cfg["cohort"].get("organ_mask_column") or ""
    columns = {m: organ if m == "organ" else mask_column(cfg, m) for m in masks}
    roi = {
        m: full["roi"][m]
        for m in sorted(masks)
        if m in full["roi"] and may_be_dicom(row.get(columns[m]))
    }
    if roi:
        out["roi"] = roi
    return out


def path_columns(cfg: dict) -> list[str]:
    """Columns holding file paths: images, reader masks, the organ mask."""
    c = cfg["cohort"]
    cols = [image_column(cfg, s) for s in c["sequences"]]
    cols += [mask_column(cfg, r) for r in c["readers"]]
    return cols + ([c["organ_mask_column"]] if c["organ_mask_column"] else [])


def required_columns(cfg: dict) -> dict[str, str]:
    """Columns the config asks for (internal names: the id, center and split columns
    are ``case_id``, ``center`` and ``split`` once read), mapped to their kind."""
    c = cfg["cohort"]
    cols = {"case_id": "id", "center": "meta", "split": "meta"}
    cols.update({image_column(cfg, s): "image" for s in c["sequences"]})
    cols.update({mask_column(cfg, r): "mask" for r in c["readers"]})
    cols.update({col: "series uid" for col in uid_columns(cfg)})
    cols.update({col: "clinical" for col in c["clinical"]})
    cols.update({col: "descriptor" for col in c["descriptors"]})
    for name, ep in cfg["endpoints"].items():
        if ep["type"] == "binary":
            cols[ep["column"]] = f"outcome {name}"
        else:
            cols[ep["time"]] = f"outcome {name}"
            cols[ep["event"]] = f"outcome {name}"
    if c["organ_mask_column"]:
        cols[c["organ_mask_column"]] = "mask"
    fold = cfg["evaluation"]["cv"]["fold_column"] if "evaluation" in cfg else ""
    if fold:
        cols[fold] = "fold"
    return cols


def source_columns(cfg: dict) -> list[str]:
    """The sheet's own names of the columns the config asks for (cohort.id_column,
    center_column and split_column instead of the internal names): the columns of a
    feature table that are never features."""
    c = cfg["cohort"]
    rename = {"case_id": c["id_column"], "center": c["center_column"], "split": c["split_column"]}
    cols = [rename.get(col, col) for col in required_columns(cfg)]
    return sorted({col for col in cols if col} | set(c["require"]))


def _row_schema(cfg: dict, base_schema: dict) -> dict:
    """Per-row JSON schema: the static schema plus the columns from the config."""
    schema = {**base_schema, "properties": dict(base_schema.get("properties", {}))}
    req = required_columns(cfg)
    for col, kind in req.items():
        if col in schema["properties"]:
            continue
        if kind in ("image", "mask", "series uid"):
            schema["properties"][col] = {"type": ["string", "null"]}
        elif kind.startswith("outcome") or kind in ("clinical", "descriptor"):
            schema["properties"][col] = {"type": ["number", "null"]}
    for ep in cfg["endpoints"].values():
        if ep["type"] == "binary":
            schema["properties"][ep["column"]] = {"enum": [0, 1, None]}
        else:
            schema["properties"][ep["event"]] = {"enum": [0, 1, None]}
            schema["properties"][ep["time"]] = {"type": ["number", "null"], "minimum": 0}
    schema["required"] = sorted(set(schema.get("required", [])) | {"case_id", "center", "split"})
    return schema


def _to_records(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN -> None and integral floats -> int (for the schema)."""
    out = []
    for rec in df.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if v is None or (isinstance(v, float) and np.isnan(v)):
                clean[k] = None
            elif isinstance(v, float) and v.is_integer():
                clean[k] = int(v)
            elif isinstance(v, (np.integer,)):
                clean[k] = int(v)
            elif isinstance(v, (np.floating,)):
                clean[k] = float(v)
            else:
                clean[k] = v
        out.append(clean)
    return out


def read_sheet(path: str | Path, text_columns=(), cfg: dict | None = None) -> pd.DataFrame:
    """Read the sheet (any format :func:`radstudy.tableio.read_table` reads) with
    every column as text first, then numbers where they parse (except
    ``text_columns`` and the id, center and split columns). With ``cfg``: the id,
    center and split columns get their internal names and binary labels / event
    codes become 0/1 (:func:`standard_columns`, :func:`map_outcomes`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"cohort sheet {path} does not exist (config key cohort.sheet)")
    df = read_table(path, "cohort sheet")
    if cfg is not None:
        df = map_outcomes(standard_columns(df, cfg, path), cfg, path)
    text_cols = {"case_id", "center", "split"} | set(text_columns)
    for col in df.columns:
        if col in text_cols:
            continue
        num = pd.to_numeric(df[col], errors="coerce")
        bad = df[col].notna() & num.isna()
        if not bad.any():
            df[col] = num
    return df


def standard_columns(df: pd.DataFrame, cfg: dict, sheet: str | Path) -> pd.DataFrame:
    """Rename the configured id / center / split columns to case_id / center / split;
    a single center (``all``) or all-training split when the config names none."""
    c = cfg["cohort"]
    keys = {"case_id": "id_column", "center": "center_column", "split": "split_column"}
    rename = {}
    for internal, key in keys.items():
        col = c[key]
        if not col:
            continue
        if col not in df.columns:
            shown = ", ".join(list(df.columns)[:8]) + (", ..." if df.shape[1] > 8 else "")
            hint = "" if key == "id_column" else f" (or set cohort.{key}: '' )"
            raise ConfigError(
                f"{sheet}: no column '{col}' (config key cohort.{key}{hint}); columns: {shown}"
            )
        if col != internal and internal in df.columns:
            raise ConfigError(
                f"{sheet}: cohort.{key} is '{col}' but the sheet also has a column "
                f"'{internal}'; rename one of them"
            )
        rename[col] = internal
    df = df.rename(columns=rename)
    if not c["center_column"]:
        df.insert(1, "center", "all")
    if not c["split_column"]:
        df.insert(2, "split", "train")
    return df


# booleans as a table writes them (True/False, TRUE/FALSE); yes/no, 1/2 and other
# codings need endpoints.{name}.positive
_TRUE, _FALSE = {"true"}, {"false"}


def _code(value) -> str:
    """A label as comparable text: 1, 1.0 and '1' are the same; True and 'true' too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    try:
        num = float(text)
    except ValueError:
        return text.lower()
    return str(int(num)) if num.is_integer() else repr(num)


def map_outcomes(df: pd.DataFrame, cfg: dict, sheet: str | Path) -> pd.DataFrame:
    """Binary outcome columns and survival event columns as 0/1 (text, parsed later).

    With ``endpoints.{name}.positive`` the positive value maps to 1 and the other
    value to 0 (a third value is an error). Without it the values must be 0/1 or
    True/False (True = 1); anything else (yes/no, 1/2) asks for ``positive``.
    Missing cells stay missing.
    """
    df = df.copy()
    for name, ep in sorted(cfg["endpoints"].items()):
        col = ep["column"] if ep["type"] == "binary" else ep["event"]
        if col not in df.columns:
            continue  # validate_sheet names it
        present = df[col].dropna()
        codes = present.map(_code)
        values = sorted(set(codes))
        shown = ", ".join(sorted(set(present.astype(str)))[:6])
        if "positive" in ep:
            pos = _code(ep["positive"])
            if pos not in values:
                raise ConfigError(
                    f"{sheet}: endpoints.{name}.positive is {ep['positive']!r} but column "
                    f"'{col}' has only {shown}"
                )
            if len(values) > 2:
                raise ConfigError(
                    f"{sheet}: column '{col}' (endpoint {name}) has {len(values)} values "
                    f"({shown}); a binary outcome has two"
                )
            mapped = codes.eq(pos).astype(int).astype(str)
        elif set(values) <= {"0", "1"}:
            mapped = codes
        elif set(values) <= _TRUE | _FALSE:
            mapped = codes.isin(_TRUE).astype(int).astype(str)
        else:
            odd = codes[~codes.isin({"0", "1"})].index[0]
            row = int(df.index.get_loc(odd)) + 2
            raise ConfigError(
                f"{sheet} row {row} (case {df.loc[odd, 'case_id']}), column '{col}': "
                f"{df.loc[odd, col]!r} is not 0 or 1 (values: {shown}); name the positive "
                f"value with endpoints.{name}.positive"
            )
        df[col] = pd.Series(mapped, index=present.index).reindex(df.index).astype(object)
        df.loc[df[col].isna(), col] = None
    return df


# what a case id / center may hold, in words (the schema's patterns): they become
# file and folder names of the results
_NAME_RULES = {
    "case_id": "letters, digits, _ . - only, starting with a letter or digit (ids become "
    "file names)",
    "center": "letters, digits, _ - only, starting with a letter or digit (centers become "
    "file names)",
}


def _row(df: pd.DataFrame, i: int, sheet: str) -> str:
    """``{sheet} row {n} (case {id})`` of the i-th data row (n: the line in the file)."""
    return f"{sheet} row {i + 2} (case {df['case_id'].iloc[i]})"


def _numeric_problems(df: pd.DataFrame, cfg: dict, sheet: str) -> tuple[pd.DataFrame, list[str]]:
    """Numeric columns (clinical, descriptor, survival time) as numbers, and one
    problem per column holding text (naming its first text cell) or a non-finite
    number (inf); those cells are left out of the schema check (already named)."""
    req = required_columns(cfg)
    times = {ep["time"] for ep in cfg["endpoints"].values() if ep["type"] == "survival"}
    out, problems = df.copy(), []
    for col, kind in req.items():
        if col not in df.columns or not (kind in ("clinical", "descriptor") or col in times):
            continue
        cells = df[col]
        values = pd.to_numeric(cells, errors="coerce")
        text = cells.notna() & values.isna()
        if text.any():
            i = int(np.flatnonzero(text.to_numpy())[0])
            n = int(text.sum())
            more = f" ({n} text cells in the column)" if n > 1 else ""
            hint = "; encode categories as numbers" if kind in ("clinical", "descriptor") else ""
            problems.append(
                f"{_row(df, i, sheet)}, column '{col}' ({kind}): {cells.iloc[i]!r} is not a "
                f"number{more}{hint}"
            )
        infinite = values.notna() & ~np.isfinite(values.astype(float))
        if infinite.any():
            i = int(np.flatnonzero(infinite.to_numpy())[0])
            problems.append(
                f"{_row(df, i, sheet)}, column '{col}' ({kind}): {values.iloc[i]:g} is not a "
                "finite number"
            )
        out[col] = values.where(~infinite, np.nan)
    return out, problems


def _message(err, col: str, value) -> str:
    """The schema's complaint about one cell, in words."""
    if value is None and col in ("case_id", "center", "split"):
        return f"the cell is empty (every case needs a {col})"
    if err.validator == "pattern" and col in _NAME_RULES:
        return f"{value!r} is not allowed: {_NAME_RULES[col]}"
    return err.message


def _invalid_rows(records: list[dict], schema: dict) -> list[int]:
    """Indices of the rows that break the row schema. The schema checks each cell on
    its own (types, patterns, enums, bounds), so each column's distinct values are
    checked once: a registry's sheet has 20,000 rows and few distinct values outside
    its ids and paths (8 s per 20,000 rows row by row, measured). A schema with
    anything else checks every row."""
    if not set(schema) <= {"$schema", "description", "type", "properties", "required"}:
        return list(range(len(records)))
    cells = {col: Draft7Validator(sub) for col, sub in schema.get("properties", {}).items()}
    required = schema.get("required", [])
    known: dict = {}
    bad = []
    for i, rec in enumerate(records):
        if any(col not in rec for col in required):
            bad.append(i)
            continue
        for col, value in rec.items():
            if col not in cells:
                continue
            key = (col, type(value), value)  # 1 and True are one dict key otherwise
            if key not in known:
                known[key] = cells[col].is_valid(value)
            if not known[key]:
                bad.append(i)
                break
    return bad


def validate_sheet(df: pd.DataFrame, cfg: dict, schema: dict, sheet: str = "cases.tsv") -> None:
    """Raise ConfigError naming row (1-based data row + case id) and column."""
    req = required_columns(cfg)
    missing = [c for c in req if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{sheet}: missing column(s) {', '.join(missing)} "
            f"(needed by config: {', '.join(req[c] for c in missing)})"
        )
    checked, errors = _numeric_problems(df, cfg, sheet)
    row_schema = _row_schema(cfg, schema)
    validator = Draft7Validator(row_schema)
    records = _to_records(checked)
    for i in _invalid_rows(records, row_schema):
        rec = records[i]
        for err in sorted(validator.iter_errors(rec), key=lambda e: list(e.path)):
            col = err.path[0] if err.path else (err.validator_value or ["?"])[0]
            errors.append(
                f"{sheet} row {i + 2} (case {rec.get('case_id')}), column '{col}': "
                f"{_message(err, col, rec.get(col))}"
            )
    dup = df["case_id"][df["case_id"].duplicated()].tolist()
    if dup:
        errors.append(f"{sheet}: duplicated case_id(s): {', '.join(map(str, dup))}")
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more + "".join("\n" + e for e in errors[1:20]))


def check_files(df: pd.DataFrame, cfg: dict, sheet: str) -> None:
    """Every path the sheet gives (resolved) must exist: a missing file is a typo or
    an unmounted drive, not a case to leave out silently (ConfigError naming the
    first one, its row and column, and how many more)."""
    problems = []
    for col in path_columns(cfg):
        if col not in df.columns:
            continue
        for i, value in enumerate(df[col]):
            if value is not None and not os.path.exists(value):
                problems.append(f"{_row(df, i, sheet)}, column '{col}': {value} does not exist")
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more + "".join("\n" + p for p in problems[1:20]))


def check_training_outcomes(df: pd.DataFrame, cfg: dict, sheet: str) -> None:
    """Each endpoint must be learnable from the training rows: a binary outcome needs
    both classes among them, a survival outcome at least one event (ConfigError)."""
    train = df[df["split"] == "train"]
    for name, ep in sorted(cfg["endpoints"].items()):
        col = ep["column"] if ep["type"] == "binary" else ep["event"]
        known = pd.to_numeric(train[col], errors="coerce").dropna()
        if known.empty:
            raise ConfigError(
                f"{sheet}: endpoint {name}: no training case has a value in column '{col}'"
            )
        values = sorted({int(v) for v in known})
        if ep["type"] == "binary" and len(values) < 2:
            raise ConfigError(
                f"{sheet}: endpoint {name}: every training case with a value in column "
                f"'{col}' has {values[0]} ({len(known)} cases); a binary endpoint needs both "
                "classes among the training cases"
            )
        if ep["type"] == "survival" and values == [0]:
            raise ConfigError(
                f"{sheet}: endpoint {name}: no training case has an event (column '{col}' is "
                f"0 in all {len(known)} cases with a value)"
            )


def resolve_paths(df: pd.DataFrame, sheet_dir: Path, columns) -> pd.DataFrame:
    """Make the paths in ``columns`` absolute, relative to the sheet's folder (symbolic
    links resolved, as ``Path.resolve``). Each folder is resolved once: a registry's
    sheet holds 100,000s of paths in a few folders, and resolving each path walks
    every folder above it (23 s of a 20,000-case sheet's planning, measured)."""
    df = df.copy()
    folders: dict[str, str] = {}

    def absolute(v):
        if v is None or os.path.isabs(v):
            return v
        full = os.path.join(sheet_dir, v)
        parent, name = os.path.split(full)
        if name in ("", ".", ".."):
            return str(Path(full).resolve())
        if parent not in folders:
            folders[parent] = str(Path(parent).resolve())
        out = os.path.join(folders[parent], name)
        return str(Path(out).resolve()) if os.path.islink(out) else out

    for col in columns:
        if col in df.columns:
            df[col] = [absolute(v) for v in df[col]]
    return df


# What an inclusion expression may hold: comparisons of columns with values,
# arithmetic, and/or/not, ``in`` lists. pandas.eval itself also resolves attribute
# access, method calls and ``@`` names (local variables) and has no switch to refuse
# them, so the expression is checked on its syntax tree first.
_INCLUSION_NODES = (
    "Expression", "Compare", "BoolOp", "BinOp", "UnaryOp", "Name", "Load", "Constant",
    "List", "Tuple", "And", "Or", "Not", "Invert", "USub", "UAdd", "Add", "Sub", "Mult",
    "Div", "FloorDiv", "Mod", "Pow", "BitAnd", "BitOr", "Eq", "NotEq", "Lt", "LtE", "Gt",
    "GtE", "In", "NotIn",
)  # fmt: skip
_REFUSED = {
    "Call": "a function call",
    "Attribute": "attribute access",
    "Subscript": "indexing",
    "Lambda": "a lambda",
}


def check_inclusion(expr: str) -> None:
    """Refuse (ConfigError, one line) a ``cohort.inclusion`` expression that is more
    than comparisons, arithmetic and and/or/not over columns and values."""
    import ast
    import re

    if "@" in expr:
        raise ConfigError(
            f"cohort.inclusion expression {expr!r} is refused: '@' (local variables) is not "
            "allowed; compare sheet columns with values, e.g. 'age < 216'"
        )
    # backtick-quoted column names (pandas' syntax for names with spaces) -> plain names
    plain = re.sub(r"`[^`]*`", "_col", expr)
    try:
        tree = ast.parse(plain.strip(), mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"cohort.inclusion expression {expr!r} is not valid: {err.msg}") from None
    for node in ast.walk(tree):
        kind = type(node).__name__
        if kind not in _INCLUSION_NODES:
            what = _REFUSED.get(kind, f"'{kind}'")
            raise ConfigError(
                f"cohort.inclusion expression {expr!r} is refused: {what} is not allowed; "
                "only comparisons of sheet columns with values, arithmetic, and/or/not"
            )


def apply_inclusion(df: pd.DataFrame, cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the sheet into included cases and exclusions with a reason each.

    Criteria: every sequence image given, the reference reader's mask given,
    the ``cohort.require`` columns present (e.g. AFP, PRETEXT), and each
    ``cohort.inclusion`` expression (pandas ``query`` syntax, checked by
    :func:`check_inclusion`) true.
    """
    c = cfg["cohort"]
    reasons: dict[str, str] = {}

    def exclude(mask: pd.Series, why: str) -> None:
        for cid in df.loc[mask, "case_id"]:
            reasons.setdefault(cid, why)

    for seq in c["sequences"]:
        col = image_column(cfg, seq)
        exclude(df[col].isna(), f"no {seq} image (column {col} empty)")
    if c["readers"]:
        ref = c["reference_reader"]
        exclude(df[mask_column(cfg, ref)].isna(), f"no mask of reference reader {ref}")
    for col in c["require"]:
        if col not in df.columns:
            raise ConfigError(f"cohort.require names column '{col}' that the sheet lacks")
        exclude(df[col].isna(), f"missing required value '{col}'")
    for expr in c["inclusion"]:
        check_inclusion(expr)
        try:
            keep = df.eval(expr, local_dict={}, global_dict={})
        except Exception as err:  # pandas raises many types for a bad expression
            raise ConfigError(f"cohort.inclusion expression {expr!r} failed: {err}") from err
        exclude(~keep.fillna(False).astype(bool), f"inclusion criterion not met: {expr}")
    excluded = pd.DataFrame(
        {"case_id": list(reasons), "stage": "sheet", "reason": list(reasons.values())}
    )
    excluded = excluded.merge(df[["case_id", "center"]], on="case_id", how="left")
    included = df[~df["case_id"].isin(reasons)]
    return (
        sort_cases(included, "case_id").reset_index(drop=True),
        sort_cases(excluded[["case_id", "center", "stage", "reason"]], "case_id"),
    )


def load_cohort(
    sheet: str | Path, cfg: dict, schema_path: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read, validate and filter the sheet: (included cases, sheet-level exclusions)."""
    sheet = Path(sheet)
    schema = yaml.safe_load(Path(schema_path).read_text())
    df = read_sheet(sheet, path_columns(cfg) + uid_columns(cfg), cfg)
    validate_sheet(df, cfg, schema, sheet=str(sheet))
    df = resolve_paths(df, sheet.resolve().parent, path_columns(cfg))
    check_files(df, cfg, str(sheet))
    if df["split"].eq("train").sum() == 0:
        raise ConfigError(f"{sheet}: no row has split 'train'; nothing to fit on")
    check_training_outcomes(df, cfg, str(sheet))
    included, excluded = apply_inclusion(df, cfg)
    # only the columns the config names go on (the sheet may hold many more)
    named = set(required_columns(cfg)) | set(cfg["cohort"]["require"])
    return included[[c for c in included.columns if c in named]], excluded


def to_tsv(df: pd.DataFrame) -> str:
    """Deterministic TSV text (sorted columns kept as given, fixed float format)."""
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` only when it differs, so unchanged files keep their mtime.

    The workflow materialises per-center slices of the sheet this way: adding a
    new center must not touch the old centers' files, or Snakemake would rerun
    their jobs.
    """
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def materialize(included: pd.DataFrame, excluded: pd.DataFrame, outdir: str | Path) -> None:
    """Write cases.tsv, sheet_excluded.tsv and centers/{center}.tsv (only if changed)."""
    outdir = Path(outdir)
    write_if_changed(outdir / "cases.tsv", to_tsv(included))
    write_if_changed(outdir / "sheet_excluded.tsv", to_tsv(excluded))
    for center, rows in included.groupby("center", sort=True):
        write_if_changed(outdir / "centers" / f"{center}.tsv", to_tsv(rows))


def training_centers(included: pd.DataFrame) -> list[str]:
    """Centers that contribute training rows (the harmonisation reference)."""
    return sorted(included.loc[included["split"] == "train", "center"].unique())


def batches(cases: list[str], size: int) -> dict[str, list[str]]:
    """Split one center's cases into extraction batches of at most ``size`` cases.

    Sorted cases in contiguous runs of near-equal length (ceil(n / size) batches,
    lengths differ by at most one: two jobs of 5 rather than 8 + 2, so they finish
    together). Keys ``001``, ``002``, ... The split depends on the center's cases
    only: a new center never changes the batches of the old ones.
    """
    cases = sorted(cases)
    if size < 1:
        raise ConfigError(f"features.batch_size must be >= 1, not {size}")
    k = -(-len(cases) // size)
    out, start = {}, 0
    for i in range(k):
        n = len(cases) // k + (i < len(cases) % k)
        out[f"{i + 1:03d}"] = cases[start : start + n]
        start += n
    return out


def split_batches(cases: list[str], train, size: int) -> dict[str, list[str]]:
    """:func:`batches` of one center's training cases (in ``train``), then of its other
    cases, numbered on: no batch mixes the two, so a job that reads the batches of the
    training cases (a fit's pieces) never lists a test or external case's folder."""
    fit = batches([c for c in cases if c in train], size)
    rest = batches([c for c in cases if c not in train], size)
    out = dict(fit)
    for i, run in enumerate(rest.values(), len(fit) + 1):
        out[f"{i:03d}"] = run
    return out


def batch_threads(n_batches: int, cores: int, largest: int) -> int:
    """Threads per extraction batch job so that ``n_batches`` jobs fill ``cores``.

    Each thread runs one case at a time, so a batch of ``largest`` cases takes
    ``ceil(largest / t)`` case-lengths on ``t`` threads, and the jobs run in waves of
    ``cores // t``. Picks the ``t`` with the shortest estimated run, ties to fewer
    threads: jobs side by side overlap each other's start-up (~2 s: interpreter,
    pyradiomics) and last case (measured on 2 cores, 4 batches of 15: 1 thread
    each 47-49 s, 2 threads each 53-63 s). One batch on 2 cores gets 2 threads,
    2 or 4 batches get 1 each, 3 batches get 2 each.
    """
    cores, largest = max(1, int(cores)), max(1, int(largest))
    n = max(1, int(n_batches))

    def length(t: int) -> int:
        return -(-n // (cores // t)) * -(-largest // t)

    return min(range(1, min(cores, largest) + 1), key=lambda t: (length(t), t))
