"""ICC per feature against pingouin, known answers, missing readers, speed; ICC filter."""

import time

import numpy as np
import pandas as pd
import pingouin as pg
import pytest

from radstudy.errors import CaseError
from radstudy.reproducibility import (
    ICC_TYPES,
    ICCFilter,
    category,
    icc_table,
    inter_intra,
    robust_features,
)


def _long(values: dict[str, np.ndarray], prefix="T2__f") -> pd.DataFrame:
    """values: reader -> cases x features array -> long table."""
    frames = []
    for r, v in values.items():
        df = pd.DataFrame(v, columns=[f"{prefix}{j:03d}" for j in range(v.shape[1])])
        df.insert(0, "reader", r)
        df.insert(0, "case_id", [f"c{i:03d}" for i in range(len(v))])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _pingouin(long, feature, icc_type):
    pg.options["round.column.CI95"] = None  # full precision for the comparison
    try:
        ref = pg.intraclass_corr(long, targets="case_id", raters="reader", ratings=feature)
    finally:
        pg.options["round.column.CI95"] = 2
    row = ref.set_index("Type").loc[icc_type]
    return row["ICC"], row["CI95"][0], row["CI95"][1]


@pytest.mark.parametrize("icc_type", ICC_TYPES)
def test_matches_pingouin_for_every_type(icc_type):
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(25, 4))
    long = _long(
        {
            "R1": truth + rng.normal(scale=0.2, size=truth.shape),
            "R2": truth + 0.3 + rng.normal(scale=0.6, size=truth.shape),
            "R3": truth * 1.1 + rng.normal(scale=0.4, size=truth.shape),
        }
    )
    t = icc_table(long, icc_type=icc_type).set_index("feature")
    for f in t.index:
        icc, low, high = _pingouin(long, f, icc_type)
        assert t.loc[f, "icc"] == pytest.approx(icc, abs=1e-10)
        assert t.loc[f, "low"] == pytest.approx(low, abs=1e-8)
        assert t.loc[f, "high"] == pytest.approx(high, abs=1e-8)
        assert t.loc[f, "category"] == category(icc)
    assert (t["n_cases"] == 25).all()


def test_known_answers_identical_noise_constant():
    rng = np.random.default_rng(0)
    n = 40
    truth = rng.normal(size=(n, 1))
    r1 = np.hstack([truth, rng.normal(size=(n, 1)), np.full((n, 1), 7.0)])
    r2 = np.hstack([truth, rng.normal(size=(n, 1)), np.full((n, 1), 7.0)])
    t = icc_table(_long({"R1": r1, "R2": r2})).set_index("feature")
    assert t.loc["T2__f000", "icc"] == pytest.approx(1.0, abs=1e-9)
    assert t.loc["T2__f000", "category"] == "excellent"
    assert abs(t.loc["T2__f001", "icc"]) < 0.35  # independent noise: ~0
    assert t.loc["T2__f001", "low"] < 0 < t.loc["T2__f001", "high"]
    assert np.isnan(t.loc["T2__f002", "icc"]) and t.loc["T2__f002", "category"] == "undefined"


def test_systematic_offset_lowers_absolute_not_consistency_agreement():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(30, 1))
    long = _long({"R1": truth, "R2": truth + 2.0})
    a = icc_table(long, icc_type="ICC(A,1)")["icc"].iloc[0]
    c = icc_table(long, icc_type="ICC(C,1)")["icc"].iloc[0]
    assert c == pytest.approx(1.0, abs=1e-9)
    assert a < 0.3


def test_missing_readers_and_cells_drop_cases():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(20, 3))
    r1, r2 = truth + rng.normal(scale=0.3, size=truth.shape), truth.copy()
    r2[4, 1] = np.nan  # one missing cell: case c004 dropped for f001 only
    long = _long({"R1": r1, "R2": r2})
    long = long[~((long["case_id"] == "c007") & (long["reader"] == "R2"))]  # R2 skipped c007
    t = icc_table(long).set_index("feature")
    assert t["n_cases"].to_dict() == {"T2__f000": 19, "T2__f001": 18, "T2__f002": 19}
    keep = long[~long["case_id"].isin(["c004", "c007"])]
    ref = _pingouin(keep, "T2__f001", "ICC(A,1)")[0]
    assert t.loc["T2__f001", "icc"] == pytest.approx(ref, abs=1e-10)
    dup = pd.concat([long, long.iloc[[0]]])
    with pytest.raises(CaseError, match="case c000: .*2 rows"):
        icc_table(dup)


def test_inter_intra_tidy_and_robust():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(20, 2))
    r1 = base.copy()
    r2 = np.column_stack([base[:, 0], rng.normal(size=20)])  # f001 differs between readers
    r1r = base + rng.normal(scale=0.05, size=base.shape)
    long = _long({"R1": r1, "R2": r2, "R1r": r1r})
    res = inter_intra(long, readers=["R1", "R2"], repeat_pairs={"R1r": "R1"})
    assert list(res.columns) == [
        "kind",
        "raters",
        "feature",
        "icc",
        "low",
        "high",
        "category",
        "n_cases",
    ]
    inter = res[res["kind"] == "inter"].set_index("feature")["icc"]
    intra = res[res["kind"] == "intra"].set_index("feature")["icc"]
    assert set(res["raters"]) == {"R1+R2", "R1+R1r"}
    assert inter["T2__f000"] == pytest.approx(1.0) and inter["T2__f001"] < 0.5
    assert intra["T2__f001"] > 0.95
    assert robust_features(res[res["kind"] == "inter"], 0.75) == ["T2__f000"]
    assert robust_features(res, 0.75) == ["T2__f000"]  # must pass inter and intra


def test_thousand_features_is_fast():
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(40, 1000))
    long = _long({r: truth + rng.normal(scale=0.5, size=truth.shape) for r in ("R1", "R2")})
    start = time.perf_counter()
    t = icc_table(long)
    elapsed = time.perf_counter() - start
    assert len(t) == 1000 and elapsed < 10
    # true ICC = 1 / (1 + 0.25) = 0.8
    assert t["icc"].median() == pytest.approx(0.8, abs=0.05)


def test_icc_filter_keeps_listed_radiomics_and_passes_the_rest():
    X = pd.DataFrame(
        {
            "center": ["A"],
            "T2__a": [1.0],
            "T2__b": [2.0],
            "T2__deep_resnet18_000": [0.1],
            "clinical__x": [0.0],
        }
    )
    f = ICCFilter(keep=["T2__a"]).fit(X)
    assert list(f.transform(X).columns) == [
        "center",
        "T2__a",
        "T2__deep_resnet18_000",
        "clinical__x",
    ]
    assert f.selected_ == ["T2__a"] and f.reasons_["T2__b"] == "ICC below threshold"
    assert list(ICCFilter().fit(X).transform(X).columns) == list(X.columns)
