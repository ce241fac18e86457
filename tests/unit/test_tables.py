"""Per-center tables: the feature-table entry point."""

import numpy as np
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
    cohort = {
        "id_column": "case_id",
        "feature_columns": ["*"],
        "ignore_columns": [],
        "clinical": ["age"],
    }
    out = import_center(
        tmp_path / "f.csv",
        tmp_path / "A.tsv",
        cohort,
        ["case_id", "center", "split", "age", "label"],
        tmp_path / "o.parquet",
        tmp_path / "e.tsv",
        tmp_path / "columns.tsv",
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
            {**cohort, "clinical": []},
            ["case_id"],
            tmp_path / "o",
            tmp_path / "e",
        )
    roles = pd.read_csv(tmp_path / "columns.tsv", sep="\t").set_index("column")["role"]
    assert roles.to_dict() == {
        "case_id": "id",
        "center": "sheet",
        "split": "sheet",
        "age": "sheet",
        "label": "sheet",
        "T2__original_firstorder_Mean": "feature",
        "x": "feature",
    }


def _published(tmp_path):
    """A table as published: ID, Target (text labels), features, an id number, a
    published score, a text column, gaps."""
    rng = np.random.default_rng(0)
    n = 12
    df = pd.DataFrame(
        {
            "ID": [str(i) for i in range(1, n + 1)],
            "Target": ["yes", "no"] * (n // 2),
            "patient_number": np.arange(100, 100 + n),
            "published_score": rng.normal(size=n),
            "histology": ["a", "b"] * (n // 2),
            "original_firstorder_Mean": rng.normal(size=n),
            "wavelet-LLH_glcm_Contrast": rng.normal(size=n),
        }
    )
    df.loc[3, "original_firstorder_Mean"] = np.nan
    return df


def test_undeclared_columns_are_left_out_with_a_notice(tmp_path, caplog):
    df = _published(tmp_path)
    df.to_csv(tmp_path / "t.csv.gz", index=False)
    sheet = pd.DataFrame({"case_id": df["ID"], "center": "all", "split": "train"})
    sheet["Target"] = (df["Target"] == "yes").astype(int)
    sheet.to_csv(tmp_path / "all.tsv", sep="\t", index=False)
    cohort = {
        "id_column": "ID",
        "feature_columns": ["original_*", "wavelet*"],
        "ignore_columns": [],
        "clinical": [],
    }
    with caplog.at_level("WARNING"):
        out = import_center(
            tmp_path / "t.csv.gz", tmp_path / "all.tsv", cohort, ["ID", "Target"],
            tmp_path / "o.parquet", tmp_path / "e.tsv", tmp_path / "c.tsv",
        )  # fmt: skip
    assert [c for c in out.columns if c.startswith("table__")] == [
        "table__original_firstorder_Mean",
        "table__wavelet-LLH_glcm_Contrast",
    ]
    # the id number, the published score and the text column are not features
    assert "3 column(s)" in caplog.text and "patient_number" in caplog.text
    assert "published_score" in caplog.text and "histology" in caplog.text
    # ids in natural order (1, 2, ..., 10), the gap kept for the imputation step
    assert list(out.index) == [str(i) for i in range(1, 13)]
    assert np.isnan(out.loc["4", "table__original_firstorder_Mean"])
    # '*' takes the text column too: an error naming it and the way out
    with pytest.raises(ConfigError, match="'histology' is not numeric.*ignore_columns"):
        import_center(
            tmp_path / "t.csv.gz", tmp_path / "all.tsv", {**cohort, "feature_columns": ["*"]},
            ["ID", "Target"], tmp_path / "o.parquet", tmp_path / "e.tsv",
        )  # fmt: skip
    ignore = {**cohort, "feature_columns": ["*"], "ignore_columns": ["histology", "p*"]}
    out = import_center(
        tmp_path / "t.csv.gz", tmp_path / "all.tsv", ignore, ["ID", "Target"],
        tmp_path / "o.parquet", tmp_path / "e.tsv",
    )  # fmt: skip
    assert len([c for c in out.columns if c.startswith("table__")]) == 2
