"""One table reader for the whole project: cohort sheets and feature tables.

Formats: CSV and TSV (plain or gzip-compressed), parquet and xlsx. The format is
read from the file's first bytes (gzip, parquet and zip/xlsx have signatures) and
checked against its extension; text tables are split on the delimiter the
extension names (``.csv`` comma, ``.tsv``/``.tab`` tab), and a header line that
says otherwise is an error rather than a silent misreading (a ``.csv`` whose
header has tabs and no commas). Other extensions (``.txt``, none) take the
delimiter that splits the header line, and say which.

Every cell comes back as text (missing: ``None``) so that callers decide what is
numeric, what is an id and what is a label: ``1`` and ``01`` stay different ids,
``True``/``False`` stay labels until an endpoint's positive class maps them.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
from natsort import index_natsorted, natsorted

from radstudy.errors import ConfigError

# cells read as missing (besides the empty cell); "NA" as R writes it
MISSING = ("", "NA", "NaN", "nan", "N/A", "n/a", "NULL", "null", "None")

_GZIP, _PARQUET, _ZIP = b"\x1f\x8b", b"PAR1", b"PK\x03\x04"
_TEXT_SEP = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _suffixes(path: Path) -> tuple[str, bool]:
    """(the format's extension, gzip-compressed by name) of ``path``."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), gz


def table_format(path: str | Path) -> str:
    """'csv', 'tsv', 'parquet' or 'xlsx' (text tables: the delimiter by extension or
    by the header line), from the file's content, checked against its name."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    ext, gz_name = _suffixes(path)
    if head.startswith(_PARQUET):
        if ext not in ("", ".parquet", ".pq"):
            raise ConfigError(f"{path}: the file is parquet but its name ends in {ext}")
        return "parquet"
    if head.startswith(_ZIP):
        if ext not in ("", ".xlsx", ".xlsm"):
            raise ConfigError(f"{path}: the file is a zip/xlsx workbook but its name ends in {ext}")
        return "xlsx"
    if ext in (".parquet", ".pq", ".xlsx", ".xlsm", ".xls"):
        what = "gzip-compressed" if head.startswith(_GZIP) else "text"
        raise ConfigError(f"{path}: named {ext} but the file is {what}")
    if gz_name and not head.startswith(_GZIP):
        raise ConfigError(f"{path}: named .gz but the file is not gzip-compressed")
    header = _first_line(path, head.startswith(_GZIP))
    tabs, commas, semis = header.count("\t"), header.count(","), header.count(";")
    if ext in _TEXT_SEP:
        sep = _TEXT_SEP[ext]
        if sep == "," and commas == 0 and tabs > 0:
            raise ConfigError(
                f"{path}: named .csv but its header is tab-separated; rename it to .tsv"
            )
        if sep == "\t" and tabs == 0 and commas > 0:
            raise ConfigError(
                f"{path}: named {ext} but its header is comma-separated; rename it to .csv"
            )
        if sep == "," and commas == 0 and semis > 0:
            raise ConfigError(
                f"{path}: its header is separated by ';' (a spreadsheet's European CSV); "
                "save it with commas or as .xlsx"
            )
        return "csv" if sep == "," else "tsv"
    if tabs == 0 and commas == 0:
        raise ConfigError(
            f"{path}: cannot tell the delimiter (no tab or comma in the header); "
            "name it .csv or .tsv"
        )
    return "tsv" if tabs >= commas else "csv"


def _first_line(path: Path, gz: bool) -> str:
    opener = gzip.open if gz else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return fh.readline()
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason}); save it as UTF-8") from err
    except (OSError, EOFError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from err


def _cell_text(v) -> str | None:
    """One typed cell (parquet, xlsx) as text; integral floats (an id a spreadsheet
    stored as 12.0) print as 12."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
    return str(v)


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, missing as None (typed sources: parquet, xlsx)."""
    return pd.DataFrame(
        {str(c): [_cell_text(v) for v in df[c].to_numpy(object)] for c in df.columns},
        index=pd.RangeIndex(len(df)),
        dtype=object,
    )


def read_table(path: str | Path, what: str = "table") -> pd.DataFrame:
    """The table at ``path`` with every cell as text (missing cells: None).

    ``what`` names the table in errors (e.g. "cohort sheet"). Column names must be
    unique and non-empty.
    """
    path = Path(path)
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "missing"
        raise ConfigError(f"{what} {path} is {kind}; give a CSV, TSV, parquet or xlsx file")
    if path.stat().st_size == 0:
        raise ConfigError(f"{what} {path} is empty")
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            df = _as_text(pd.read_parquet(path))
        elif fmt == "xlsx":
            # header=None: pandas renames a duplicated name to "x.1"; take the header
            # row as written
            raw = pd.read_excel(path, sheet_name=0, engine="openpyxl", dtype=object, header=None)
            names = [_cell_text(v) or "" for v in raw.iloc[0]] if len(raw) else []
            df = _as_text(raw.iloc[1:])
            df.columns = names
        else:
            raw = _read_text(path, "," if fmt == "csv" else "\t")
            df = raw.where(~raw.isin(MISSING), None)
    except ConfigError:
        raise
    except Exception as err:  # pandas / pyarrow / openpyxl raise many kinds
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{what} {path}: cannot be read as {fmt} ({first})") from err
    df.columns = [str(c).strip() for c in df.columns]
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise ConfigError(f"{what} {path}: duplicated column name(s) {', '.join(dup[:5])}")
    if any(c == "" or c.startswith("Unnamed: ") for c in df.columns):
        raise ConfigError(
            f"{what} {path}: a column has no name (an index column or a stray delimiter?)"
        )
    return df


def _read_text(path: Path, sep: str) -> pd.DataFrame:
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP
    with (gzip.open if gz else open)(path, "rt", encoding="utf-8-sig", newline="") as fh:
        text = fh.read()
    # pandas renames a duplicated name to "x.1": read the header line as written
    names = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    if len(names) == df.shape[1]:
        df.columns = names
    return df


def numeric(series: pd.Series) -> pd.Series | None:
    """The column as float64 when every present cell parses as a number, else None."""
    values = pd.to_numeric(series, errors="coerce")
    bad = series.notna() & values.isna()
    return None if bad.any() else values.astype("float64")


def natural(values) -> list:
    """``values`` in natural order."""
    return natsorted(values, key=str)


def sort_cases(df: pd.DataFrame, by: str | list[str] | None = None) -> pd.DataFrame:
    """Rows sorted by case id in natural order (2 before 10): the index when ``by`` is
    None, else the named column(s), each compared naturally, in order."""
    if by is None:
        return df.iloc[index_natsorted([str(v) for v in df.index])]
    cols = [by] if isinstance(by, str) else list(by)
    order = np.arange(len(df))
    for col in reversed(cols):  # stable sorts, last key first
        values = [str(v) for v in df[col].to_numpy()[order]]
        order = order[index_natsorted(values)]
    return df.iloc[order]
