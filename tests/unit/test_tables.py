"""Per-center tables: the feature-table entry point."""

import pandas as pd
import pytest

from radstudy.errors import ConfigError
from radstudy.tables import import_center


def test_import_center_from_a_feature_csv(tmp_path):
    sheet = pd.DataFrame(
        {
            "case_id": ["a1", "a2", "a3"],
            "center": "A",
            "split": "train",
            "age": [3.0, 4.0, 5.0],
            "label": [0, 1, 0],
        }
    )
    sheet.to_csv(tmp_path / "A.tsv", sep="\t", index=False)
    table = sheet.drop(index=2).assign(**{"T2__original_firstorder_Mean": [1.5, 2.5], "x": 7})
    table.to_csv(tmp_path / "f.csv", index=False)
    out = import_center(
        tmp_path / "f.csv",
        tmp_path / "A.tsv",
        ["age"],
        ["case_id", "center", "split", "age", "label"],
        tmp_path / "o.parquet",
        tmp_path / "e.tsv",
    )
    assert list(out.columns) == [
        "center",
        "split",
        "T2__original_firstorder_Mean",
        "clinical__age",
        "table__x",
    ]
    assert list(out.index) == ["a1", "a2"]
    excl = pd.read_csv(tmp_path / "e.tsv", sep="\t")
    assert excl.to_dict("records") == [
        {
            "case_id": "a3",
            "center": "A",
            "stage": "import_center",
            "reason": "no row in the feature table f.csv",
        }
    ]
    table.assign(x="high").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ConfigError, match="feature column 'x' is not numeric \\(case a1"):
        import_center(
            tmp_path / "bad.csv",
            tmp_path / "A.tsv",
            [],
            ["case_id"],
            tmp_path / "o",
            tmp_path / "e",
        )
