"""One table reader: formats by content, checked names, text cells, natural order."""

import gzip

import numpy as np
import pandas as pd
import pytest

from radstudy.errors import ConfigError
from radstudy.tableio import read_table, sort_cases, table_format

DF = pd.DataFrame(
    {
        "ID": ["10", "2", "1", "007"],
        "Target": [True, False, True, False],
        "f1": [0.5, np.nan, 1.25, 3.0],
        "note": ["a", "b", None, "d"],
    }
)
EXPECTED = {
    "ID": ["10", "2", "1", "007"],
    "Target": ["True", "False", "True", "False"],
    "f1": ["0.5", None, "1.25", "3"],
    "note": ["a", "b", None, "d"],
}


@pytest.mark.parametrize(
    "name, write",
    [
        ("t.csv", lambda df, p: df.to_csv(p, index=False)),
        ("t.tsv", lambda df, p: df.to_csv(p, sep="\t", index=False)),
        ("t.csv.gz", lambda df, p: df.to_csv(p, index=False)),
        ("t.tsv.gz", lambda df, p: df.to_csv(p, sep="\t", index=False)),
        ("t.txt", lambda df, p: df.to_csv(p, sep="\t", index=False)),
        ("t.parquet", lambda df, p: df.to_parquet(p, index=False)),
        ("t.xlsx", lambda df, p: df.to_excel(p, index=False)),
    ],
)
def test_every_format_reads_to_the_same_text(tmp_path, name, write):
    path = tmp_path / name
    write(DF, path)
    got = read_table(path)
    got["f1"] = [None if v is None else str(float(v)).removesuffix(".0") for v in got["f1"]]
    assert got.to_dict("list") == EXPECTED


def test_a_gzip_csv_is_never_read_as_tsv(tmp_path):
    path = tmp_path / "t.csv.gz"
    DF.to_csv(path, index=False)
    assert table_format(path) == "csv"
    assert read_table(path).shape == (4, 4)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("t.csv", b"a\tb\n1\t2\n", "tab-separated; rename it to .tsv"),
        ("t.tsv", b"a,b\n1,2\n", "comma-separated; rename it to .csv"),
        ("t.csv", b"a;b\n1;2\n", "separated by ';'"),
        ("t.csv.gz", b"a,b\n1,2\n", "named .gz but the file is not gzip"),
        ("t.parquet", b"a,b\n1,2\n", "named .parquet but the file is text"),
        ("t.xlsx", gzip.compress(b"a,b\n", mtime=0), "named .xlsx but the file is gzip"),
        ("t.csv", b"a,a,b\n1,2,3\n", "duplicated column name(s) a"),
        ("t.csv", b",a\n0,1\n", "a column has no name"),
        ("t.csv", b"", "is empty"),
    ],
)
def test_wrong_or_contradicting_files_are_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
        read_table(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="is missing"):
        read_table(tmp_path / "none.csv")
    with pytest.raises(ConfigError, match="is a folder"):
        read_table(tmp_path)


def test_natural_case_order():
    df = pd.DataFrame({"case_id": ["10", "2", "1", "100", "b2", "b10"], "v": range(6)})
    assert list(sort_cases(df, "case_id")["case_id"]) == ["1", "2", "10", "100", "b2", "b10"]
    assert list(sort_cases(df.set_index("case_id")).index) == ["1", "2", "10", "100", "b2", "b10"]
