"""ComBat against R sva::ComBat, and mapping an unseen center onto the frozen reference."""

import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from radstudy.errors import CaseError
from radstudy.harmonize import ComBat, GroupComBat, center_predictability, pca_by_center

REF = Path(__file__).resolve().parents[1] / "data" / "combat_reference"


def _input() -> pd.DataFrame:
    dat = pd.read_csv(REF / "inputData" / "testdata.csv").to_numpy().T  # scans x features
    X = pd.DataFrame(dat, columns=[f"f{i:03d}" for i in range(dat.shape[1])])
    X.index = pd.Index([f"s{i:02d}" for i in range(1, 11)], name="case_id")
    X.insert(0, "center", ["1"] * 5 + ["2"] * 5)
    X.insert(1, "pheno", [1.0 if i % 2 == 0 else 0.0 for i in range(10)])  # scans 1,3,5,7,9
    return X


def _sva(name: str) -> np.ndarray:
    path = REF / "sva_outputs" / f"testdata_sva_{name}.csv"
    return pd.read_csv(path).to_numpy().T  # scans x features


SCENARIOS = [
    ("parametric_unadjusted", {}),
    ("parametric_adjusted", {"covariate_cols": ("pheno",)}),
    ("nonparametric_unadjusted", {"parametric": False}),
    ("nonparametric_adjusted", {"parametric": False, "covariate_cols": ("pheno",)}),
    ("parametric_unadjusted_meanonly", {"mean_only": True}),
    ("parametric_adjusted_meanonly", {"mean_only": True, "covariate_cols": ("pheno",)}),
    ("parametric_unadjusted_batchref", {"ref_batch": "1"}),
    ("parametric_adjusted_batchref", {"ref_batch": "1", "covariate_cols": ("pheno",)}),
    (
        "nonparametric_adjusted_batchref",
        {"ref_batch": "1", "parametric": False, "covariate_cols": ("pheno",)},
    ),
]


@pytest.mark.parametrize("name, kwargs", SCENARIOS)
def test_matches_r_sva(name, kwargs):
    X = _input()
    if "covariate_cols" not in kwargs:
        X = X.drop(columns="pheno")
    out = ComBat(**kwargs).fit(X).transform(X)
    assert list(out.columns) == [c for c in X.columns if c.startswith("f")]
    np.testing.assert_allclose(out.to_numpy(), _sva(name), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"covariate_cols": ("pheno",)},
        {"parametric": False, "covariate_cols": ("pheno",)},
        {"mean_only": True},
        {"eb": False, "covariate_cols": ("pheno",)},
    ],
)
def test_training_batch_relabelled_as_new_gets_its_fitted_mapping(kwargs):
    """The unseen-batch estimator is the one ComBat applies to each training batch."""
    X = _input()
    cb = ComBat(**kwargs).fit(X)
    expected = cb.transform(X).loc[X["center"] == "2"]
    relabelled = X[X["center"] == "2"].assign(center="new")
    got = cb.transform(relabelled)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6, rtol=0)
    g, d = cb.batch_params(relabelled)["new"]
    np.testing.assert_allclose(g, cb.gamma_star_["2"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(d, cb.delta_star_["2"], rtol=1e-5, atol=1e-8)


def _multi_center(seed=0, n=30, p=40):
    rng = np.random.default_rng(seed)
    frames = []
    for b, (shift, scale) in {"A": (0.0, 1.0), "B": (2.0, 1.8), "C": (-1.0, 0.6)}.items():
        base = rng.normal(size=(n, p))
        frames.append(
            pd.DataFrame(base * scale + shift, columns=[f"T2__f{i}" for i in range(p)]).assign(
                center=b, clinical__age=rng.normal(size=n)
            )
        )
    X = pd.concat(frames, ignore_index=True)
    X.index = pd.Index([f"c{i:03d}" for i in range(len(X))], name="case_id")
    return X


def _params(cb):
    return pickle.dumps((cb.grand_mean_, cb.var_pooled_, cb.gamma_star_, cb.delta_star_))


@pytest.mark.parametrize("parametric", [True, False])
def test_unseen_center_is_mapped_without_changing_the_fit(parametric):
    X = _multi_center()
    train = X[X["center"] != "C"]
    cb = ComBat(parametric=parametric).fit(train)
    before = _params(cb)
    h_train = cb.transform(train)
    h_new = cb.transform(X[X["center"] == "C"])
    assert _params(cb) == before
    # the training rows' output does not depend on the new center being present
    pd.testing.assert_frame_equal(cb.transform(X).loc[train.index], h_train)
    feats = [c for c in X.columns if c.startswith("T2__")]
    ref, new = h_train[feats].to_numpy(), h_new[feats].to_numpy()
    raw_new = X.loc[X["center"] == "C", feats].to_numpy()
    assert abs(raw_new.mean() - ref.mean()) > 1.5  # C starts far from the reference
    assert abs(new.mean() - ref.mean()) < 0.15  # location moved onto the reference
    assert new.std() / ref.std() == pytest.approx(1.0, abs=0.15)  # scale too
    # clinical columns pass through untouched; batch column dropped; order kept
    assert list(h_new.columns) == [c for c in X.columns if c != "center"]
    pd.testing.assert_series_equal(h_new["clinical__age"], X.loc[h_new.index, "clinical__age"])


def test_fit_does_not_depend_on_row_order():
    X = _multi_center(seed=2)
    a = ComBat().fit(X)
    b = ComBat().fit(X.sample(frac=1.0, random_state=3))
    assert _params(a) == _params(b)
    pd.testing.assert_frame_equal(a.transform(X), b.transform(X))


def test_pickle_round_trip_and_clone(tmp_path):
    X = _multi_center(seed=3)
    train = X[X["center"] != "C"]
    cb = ComBat(covariate_cols=("clinical__age",)).fit(train)
    joblib.dump(cb, tmp_path / "combat.joblib")
    back = joblib.load(tmp_path / "combat.joblib")
    pd.testing.assert_frame_equal(back.transform(X), cb.transform(X))
    assert "clinical__age" in back.transform(X).columns  # clinical covariate passes through
    assert clone(cb).get_params() == cb.get_params()
    doc = json.loads(cb.to_json(full=True))
    assert doc["batches"] == ["A", "B"] and len(doc["gamma_star"]["B"]) == 40
    assert doc["settings"]["covariate_cols"] == ["clinical__age"]


def test_feature_prefixes_and_constant_features_pass_through():
    X = _multi_center(seed=4)
    X["T1__x"] = X["T2__f0"] * 3.0
    X["T2__const_in_A"] = np.where(X["center"] == "A", 1.0, np.arange(len(X), dtype=float))
    cb = ComBat(feature_prefixes=("T2__",)).fit(X)
    assert "T1__x" not in cb.features_ and "T2__f0" in cb.features_
    assert cb.skipped_features_ == {"T2__const_in_A": "constant within a center"}
    H = cb.transform(X)
    pd.testing.assert_series_equal(H["T1__x"], X["T1__x"])
    pd.testing.assert_series_equal(H["T2__const_in_A"], X["T2__const_in_A"])
    assert not np.allclose(H["T2__f0"], X["T2__f0"])


def test_missing_cells_stay_missing():
    X = _multi_center(seed=5)
    X.iloc[3, 0] = np.nan
    H = ComBat().fit(X).transform(X)
    feats = [c for c in X.columns if c.startswith("T2__")]
    assert np.isnan(H.iloc[3, 0]) and np.isfinite(H[feats].to_numpy()).sum() == H[feats].size - 1


def test_too_few_rows_raise_case_errors():
    X = _multi_center(seed=6)
    cb = ComBat().fit(X[X["center"] != "C"])
    one = X[X["center"] == "C"].iloc[:1]
    with pytest.raises(CaseError, match=r"case c060: center C: .*1 row"):
        cb.transform(one)


def test_single_row_training_center_switches_to_mean_only_like_sva():
    X = _multi_center(seed=6)
    lone = pd.concat([X[X["center"] != "C"], X[X["center"] == "C"].iloc[:1]])
    cb = ComBat().fit(lone)
    assert cb.mean_only_ and not cb.mean_only
    assert all(np.all(d == 1) for d in cb.delta_star_.values())
    H = cb.transform(lone)
    feats = [c for c in X.columns if c.startswith("T2__")]
    assert np.isfinite(H[feats].to_numpy()).all()
    # the mean-only fit equals an explicit mean-only fit
    pd.testing.assert_frame_equal(H, ComBat(mean_only=True).fit(lone).transform(lone))


def test_center_predictability_drops_after_combat():
    X = _multi_center(seed=1)
    feats = [c for c in X.columns if c.startswith("T2__")]
    h = ComBat().fit(X).transform(X)
    before = center_predictability(X[feats], X["center"])
    after = center_predictability(h[feats], X["center"])
    assert before > 0.95
    assert after < 0.7
    pcs = pca_by_center(h[feats], X["center"])
    assert list(pcs.columns) == ["PC1", "PC2", "center"] and len(pcs) == len(X)
    raw_pcs = pca_by_center(X[feats], X["center"])
    # before ComBat the centers separate along PC1; after, their PC1 means are close
    assert np.ptp(raw_pcs.groupby("center")["PC1"].mean()) > 5
    assert np.ptp(pcs.groupby("center")["PC1"].mean()) < 1


def test_single_training_center_is_the_reference_and_new_centers_map_onto_it():
    rng = np.random.default_rng(4)
    n, p = 40, 6
    ref = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"T2__f{i}" for i in range(p)])
    ref.insert(0, "center", "A")
    new = pd.DataFrame(rng.normal(size=(n, p)) * 3.0 + 5.0, columns=ref.columns[1:])
    new.insert(0, "center", "N")
    cb = ComBat().fit(ref)
    assert not cb.identity_
    out_ref = cb.transform(ref)
    np.testing.assert_allclose(out_ref.to_numpy(), ref.drop(columns="center").to_numpy())
    out_new = cb.transform(new)
    # the unseen center's gain 3 and offset 5 are removed (EB-shrunk estimates)
    assert np.abs(out_new.mean().to_numpy() - ref.iloc[:, 1:].mean().to_numpy()).max() < 0.35
    assert np.all(np.abs(out_new.std().to_numpy() / ref.iloc[:, 1:].std().to_numpy() - 1) < 0.35)


# ------------------------------------------------------------ honest harmonisation
def _tied_table(seed=0, n=40, p=20) -> pd.DataFrame:
    """Three centers with location/scale effects, a feature constant 0 within center A,
    one with 80 % ties (value 0) in every center, a deep feature, clinical__sex constant
    0 within center A, clinical__age and a label of prevalence 10 % / 60 % / 35 %."""
    rng = np.random.default_rng(seed)
    frames = []
    for b, shift, scale, prev in (
        ("A", 0.0, 1.0, 0.1),
        ("B", 2.0, 1.5, 0.6),
        ("C", -1.0, 0.7, 0.35),
    ):
        d = pd.DataFrame(
            rng.normal(size=(n, p)) * scale + shift, columns=[f"T2__f{j:02d}" for j in range(p)]
        )
        d["T2__zero_in_A"] = 0.0 if b == "A" else rng.normal(size=n) + shift
        tied = rng.normal(size=n) * scale + shift
        tied[: int(0.8 * n)] = 0.0
        d["T2__tied80"] = tied
        d["T2__deep_resnet18_0"] = rng.normal(size=n) * scale + 3 * shift
        d["center"] = b
        d["clinical__sex"] = 0.0 if b == "A" else (np.arange(n) % 2).astype(float)
        d["clinical__age"] = rng.normal(60, 10, n) + 5 * shift
        d["label"] = (np.arange(n) < round(prev * n)).astype(int)
        frames.append(d)
    X = pd.concat(frames, ignore_index=True)
    X.index = pd.Index([f"c{i:03d}" for i in range(len(X))], name="case_id")
    return X


def test_tied_features_are_named_and_passed_through_or_dropped():
    X = _tied_table().drop(columns="label")
    # sva's rule alone: only the feature constant within A is left out; the 80 % tied
    # one is harmonised (its tied value becomes a different constant per center)
    plain = ComBat().fit(X)
    assert plain.skipped_features_ == {"T2__zero_in_A": "constant within a center"}
    assert "T2__tied80" in plain.features_
    H = plain.transform(X)
    tied_after = H.loc[X["T2__tied80"] == 0, "T2__tied80"].groupby(X["center"]).nunique()
    assert (tied_after == 1).all() and H.loc[X["T2__tied80"] == 0, "T2__tied80"].nunique() == 3

    passed = ComBat(tie_threshold=0.5, tied="pass").fit(X)
    assert passed.skipped_features_ == {
        "T2__zero_in_A": "constant within a center",
        "T2__tied80": "tied within a center",
    }
    assert passed.tie_share_["T2__tied80"][1] == pytest.approx(0.8)
    assert passed.dropped_features_ == []
    H = passed.transform(X)
    for c in ("T2__zero_in_A", "T2__tied80"):
        pd.testing.assert_series_equal(H[c], X[c])  # unharmonised
    assert not np.allclose(H["T2__f00"], X["T2__f00"])

    dropped = ComBat(tie_threshold=0.5, tied="drop").fit(X)
    assert sorted(dropped.dropped_features_) == ["T2__tied80", "T2__zero_in_A"]
    H = dropped.transform(X)
    assert "T2__tied80" not in H.columns and "T2__zero_in_A" not in H.columns
    assert "T2__f00" in H.columns
    assert json.loads(dropped.to_json(full=True))["dropped_features"] == (dropped.dropped_features_)
    # a stricter threshold: 80 % ties are below it
    assert "T2__tied80" in ComBat(tie_threshold=0.9).fit(X).features_


def test_near_constant_feature_is_named():
    X = _tied_table().drop(columns="label")
    rng = np.random.default_rng(1)
    X["T2__near"] = np.where(X["center"] == "B", 5.0 + rng.normal(size=len(X)) * 1e-9, X["T2__f01"])
    cb = ComBat(tie_threshold=0.5).fit(X)
    assert cb.skipped_features_["T2__near"] == "near-constant within a center"


def test_forest_sees_the_center_signal_a_linear_model_misses():
    X = _tied_table().drop(columns="label")
    feats = [c for c in X.columns if c.startswith("T2__")]
    H = ComBat().fit(X).transform(X)  # tied feature harmonised: per-center constants
    lin = center_predictability(H[feats], X["center"], seed=1, model="linear")
    forest = center_predictability(H[feats], X["center"], seed=1, model="forest")
    assert forest > 0.9 and forest - lin > 0.2
    # seeded: the same value again
    assert center_predictability(H[feats], X["center"], seed=1, model="forest") == forest
    D = ComBat(tie_threshold=0.5, tied="drop").fit(X).transform(X)
    kept = [c for c in feats if c in D.columns]
    assert center_predictability(D[kept], X["center"], seed=1, model="forest") < 0.7
    with pytest.raises(ValueError, match="not 'linear' or 'forest'"):
        center_predictability(H[feats], X["center"], model="svm")


def test_group_none_leaves_the_group_unchanged():
    X = _tied_table().drop(columns="label")
    rad = [c for c in X.columns if c.startswith("T2__f")]
    deep = ["T2__deep_resnet18_0"]
    only_deep = GroupComBat(
        groups=(("radiomics", "none"), ("deep", "combat"), ("clinical", "none"))
    ).fit(X)
    H = only_deep.transform(X)
    pd.testing.assert_frame_equal(H[rad], X[rad])
    pd.testing.assert_frame_equal(H[["clinical__age"]], X[["clinical__age"]])
    assert not np.allclose(H[deep], X[deep])
    assert only_deep.features_ == deep and "center" not in H.columns
    assert list(H.columns) == [c for c in X.columns if c != "center"]

    defaults = GroupComBat(tie_threshold=0.5).fit(X)
    H = defaults.transform(X)
    assert not np.allclose(H[rad], X[rad]) and not np.allclose(H[deep], X[deep])
    pd.testing.assert_series_equal(H["clinical__age"], X["clinical__age"])
    # radiomics and deep share one ComBat fit (mode combat)
    assert list(defaults.combats_) == ["combat"]
    assert set(defaults.skipped_features_) == {"T2__zero_in_A", "T2__tied80"}

    clinical = GroupComBat(
        groups=(("radiomics", "none"), ("deep", "none"), ("clinical", "combat_covariates")),
        covariate_cols=("clinical__sex",),
    ).fit(X)
    H = clinical.transform(X)
    assert clinical.features_ == ["clinical__age"]  # the covariate is never harmonised
    pd.testing.assert_series_equal(H["clinical__sex"], X["clinical__sex"])
    assert (
        H.groupby(X["center"])["clinical__age"].mean().std()
        < 2.0
        < (X.groupby("center")["clinical__age"].mean().std())
    )
    with pytest.raises(ValueError, match="'harmonize' is not one of"):
        GroupComBat(groups=(("radiomics", "harmonize"),)).fit(X)


def test_covariate_constant_within_one_center_fits():
    X = _tied_table().drop(columns="label")
    cb = GroupComBat(
        groups=(("radiomics", "combat_covariates"), ("deep", "combat")),
        covariate_cols=("clinical__sex",),
    ).fit(X)
    H = cb.transform(X)
    assert set(cb.combats_) == {"combat", "combat_covariates"}
    assert cb.combats_["combat_covariates"].beta_.shape == (1, 21)
    assert cb.combats_["combat"].beta_ is None
    feats = [c for c in H.columns if c.startswith("T2__")]
    assert np.isfinite(H[feats].to_numpy()).all()


def test_covariate_confounded_with_center_is_one_line_error():
    X = _tied_table().drop(columns="label")
    X["clinical__sex"] = (X["center"] == "B").astype(float)  # constant within every center
    with pytest.raises(ValueError) as err:
        ComBat(covariate_cols=("clinical__sex",)).fit(X)
    msg = str(err.value)
    assert "\n" not in msg
    assert "'clinical__sex' is confounded with the center" in msg
    assert "(A: 0, B: 1, C: 0)" in msg


def test_single_center_constant_covariate_gets_no_effect(caplog):
    X = _tied_table().drop(columns="label")
    A = X[X["center"] == "A"]
    with caplog.at_level("WARNING"):
        cb = ComBat(covariate_cols=("clinical__sex",)).fit(A)
    assert "clinical__sex is constant within the single training center A" in caplog.text
    assert np.all(cb.beta_ == 0)
    np.testing.assert_allclose(cb.grand_mean_, A[cb.features_].mean().to_numpy())
    H = cb.transform(X[X["center"] == "B"])
    assert np.isfinite(H[cb.features_].to_numpy()).all()


# ------------------------------------------------- stages: fit_combat, pipeline, loco
def _files(tmp_path, X: pd.DataFrame, label: str = "label"):
    """Per-center tables and sheets (split train) as the workflow writes them."""
    tables, sheets = [], []
    for c, part in X.groupby("center"):
        t = part.drop(columns=[label]).assign(split="train")
        t = t[["center", "split", *[x for x in t.columns if x not in ("center", "split")]]]
        t.to_parquet(tmp_path / f"{c}.parquet")
        sheet = pd.DataFrame(
            {"case_id": part.index, "center": c, "split": "train", "label": part[label]}
        )
        sheet.to_csv(tmp_path / f"{c}.tsv", sep="\t", index=False)
        tables.append(str(tmp_path / f"{c}.parquet"))
        sheets.append(str(tmp_path / f"{c}.tsv"))
    return tables, sheets


def _cfg(**harmonization):
    from radstudy.config import with_defaults

    return with_defaults(
        {
            "seed": 5,
            "cohort": {"sheet": "x.tsv", "clinical": ["sex", "age"]},
            "harmonization": harmonization,
            "selection": {"variance": {}},
            "endpoints": {"rec": {"type": "binary", "column": "label"}},
            "models": {
                "rec": {"lr": {"groups": ["radiomics"], "classifier": {"name": "logistic"}}}
            },
            "evaluation": {"cv": {"n_splits": 3, "n_repeats": 1}, "bootstrap": 100},
        }
    )


def test_fit_combat_summary_names_tied_features_and_both_predictabilities(tmp_path, caplog):
    from radstudy import stages

    X = _tied_table()
    tables, sheets = _files(tmp_path, X)
    cfg = _cfg()
    assert cfg["harmonization"]["tie_threshold"] == 0.5  # the schema's defaults
    assert cfg["harmonization"]["groups"] == {
        "radiomics": "combat",
        "deep": "combat",
        "clinical": "none",
    }
    with caplog.at_level("WARNING"):
        stages.fit_combat(
            tables,
            cfg["harmonization"],
            str(tmp_path / "combat.joblib"),
            str(tmp_path / "combat.json"),
            sheets=sheets,
            endpoints=cfg["endpoints"],
            seed=cfg["seed"],
        )
    s = json.loads((tmp_path / "combat.json").read_text())
    nh = s["not_harmonized"]
    assert nh["counts"] == {"constant within a center": 1, "tied within a center": 1}
    assert nh["features"] == {
        "T2__tied80": "tied within a center",
        "T2__zero_in_A": "constant within a center",
    }
    assert set(nh["action"].values()) == {"passed through"}
    assert nh["tie_share"]["T2__tied80"][1] == pytest.approx(0.8)
    pred = s["center_predictability"]
    assert set(pred) == {"linear", "forest"}
    assert pred["linear"]["before"] > 0.95 and pred["forest"]["before"] > 0.95
    # T2__zero_in_A passes through unharmonised: a forest still finds center A by it
    assert pred["forest"]["after"] > 0.8
    assert s["center_auc_after"] == pred["linear"]["after"]
    # 10 % vs 60 % vs 35 %: the prevalence warning fires
    prev = s["prevalence"]["rec"]
    assert prev["differs"] and prev["p"] < 0.01 and prev["test"] == "chi-square test"
    assert prev["prevalence"] == {"A": 0.1, "B": 0.6, "C": 0.35}
    assert "endpoint rec: outcome prevalence differs between training centers" in caplog.text
    assert "A 10% of 40, B 60% of 40, C 35% of 40" in caplog.text


def test_prevalence_test_two_centers_and_no_warning_when_alike(tmp_path, caplog):
    from radstudy import stages

    X = _tied_table()
    two = X[X["center"] != "C"]
    res = stages.prevalence_by_center(two["label"], two["center"], 0.01)
    assert res["test"] == "Fisher's exact test" and res["differs"] and res["p"] < 0.001
    X["label"] = np.arange(len(X)) % 3 == 0  # a third in every center
    tables, sheets = _files(tmp_path, X.assign(label=X["label"].astype(int)))
    cfg = _cfg(tied="drop")
    with caplog.at_level("WARNING"):
        stages.fit_combat(
            tables,
            cfg["harmonization"],
            str(tmp_path / "combat.joblib"),
            str(tmp_path / "combat.json"),
            sheets=sheets,
            endpoints=cfg["endpoints"],
        )
    s = json.loads((tmp_path / "combat.json").read_text())
    assert not s["prevalence"]["rec"]["differs"]
    assert "prevalence differs" not in caplog.text
    assert set(s["not_harmonized"]["action"].values()) == {"dropped"}
    # dropped tied features: the harmonised tables lack them
    stages.harmonize_center(str(tmp_path / "combat.joblib"), tables[0], str(tmp_path / "H.parquet"))
    H = pd.read_parquet(tmp_path / "H.parquet")
    assert "T2__tied80" not in H.columns and "T2__f00" in H.columns


def test_pipeline_covariate_reaches_combat_but_is_no_model_feature():
    """A ComBat covariate with a model of radiomics only: ComBat gets it, the model not."""
    from radstudy import stages

    X = _tied_table()
    y = X.pop("label")
    cfg = _cfg(covariates=["sex"], groups={"radiomics": "combat_covariates"})
    spec = cfg["models"]["rec"]["lr"]
    ep = cfg["endpoints"]["rec"]
    pipe = stages.build_pipeline(spec, cfg, ep, None, 1).fit(X, y)
    names = [n for n, _ in pipe.steps]
    assert names.index("groups") < names.index("combat") < names.index("drop_covariates")
    combat = pipe.named_steps["combat"]
    assert combat.combats_["combat_covariates"].covariate_cols == ("clinical__sex",)
    upto = pipe[: names.index("drop_covariates") + 1].transform(X)
    assert not [c for c in upto.columns if c.startswith("clinical__")]
    # a model that sees clinical keeps the covariate as a feature
    spec2 = {**spec, "groups": ["radiomics", "clinical"]}
    pipe2 = stages.build_pipeline(spec2, cfg, ep, None, 1).fit(X, y)
    assert "drop_covariates" not in pipe2.named_steps
    out2 = pipe2[: [n for n, _ in pipe2.steps].index("combat") + 1].transform(X)
    assert "clinical__sex" in out2.columns
    # groups with mode none: no ComBat step at all
    off = _cfg(groups={"radiomics": "none", "deep": "none"})
    assert "combat" not in stages.build_pipeline(spec, off, ep, None, 1).named_steps


def test_leave_one_center_out_also_runs_unharmonised(tmp_path):
    from radstudy import stages

    X = _tied_table(n=30)
    X["label"] = (np.arange(len(X)) % 2).astype(int)
    X["T2__f00"] += X["label"]
    tables, sheets = _files(tmp_path, X)
    (tmp_path / "robust.txt").write_text("ALL\n")
    for enabled in (True, False):
        cfg = _cfg(enabled=enabled)
        cfg["evaluation"]["shuffled_null"] = False
        out = tmp_path / f"cv_{enabled}.tsv"
        args = (tables, sheets, str(tmp_path / "robust.txt"), "rec", "lr", cfg)
        stages.cross_validate_model(*args, str(out))
        cv = pd.read_csv(out, sep="\t")
        unh = {c for c in cv["cohort"] if c.startswith("loco_unharmonized")}
        if not enabled:
            assert not unh
            continue
        assert unh == {"loco_unharmonized", *(f"loco_unharmonized:{c}" for c in "ABC")}
        a = cv[cv["cohort"] == "loco"].drop(columns="cohort").reset_index(drop=True)
        b = cv[cv["cohort"] == "loco_unharmonized"].drop(columns="cohort").reset_index(drop=True)
        assert list(a.columns) == list(b.columns) and len(a) == len(b) == len(X)
        assert not np.allclose(a["y_prob"], b["y_prob"])  # a different chain
        stages.fit_model(*args, *(str(tmp_path / f) for f in ("m.joblib", "card.json", "sel.tsv")))
        preds = []
        for t, sh in zip(tables, sheets, strict=True):
            preds.append(str(tmp_path / f"pred_{Path(t).stem}.tsv"))
            model, card = str(tmp_path / "m.joblib"), str(tmp_path / "card.json")
            stages.predict_center(model, card, t, sh, "rec", cfg, preds[-1])
        stages.evaluate_model(
            str(out),
            str(tmp_path / "card.json"),
            preds,
            "rec",
            cfg,
            str(tmp_path / "metrics.tsv"),
            str(tmp_path / "curves.parquet"),
        )
        m = pd.read_csv(tmp_path / "metrics.tsv", sep="\t")
        aucs = m[m["metric"] == "auc"].set_index("cohort")["value"]
        assert {"loco", "loco_unharmonized", "loco_unharmonized:A"} <= set(aucs.index)
        # the report's line: mean per-center AUC with and without harmonisation
        from radstudy.report import loco_comparison

        line = loco_comparison([("rec", "lr", m)])
        on = aucs[[f"loco:{c}" for c in "ABC"]].mean()
        off = aucs[[f"loco_unharmonized:{c}" for c in "ABC"]].mean()
        assert f"{on:.3f} with harmonisation, {off:.3f} without (3 centers)" in line
        assert ("unharmonised generalised better" in line) == (off > on)


def test_report_section_in_plain_words():
    from radstudy.report import combat_section

    summary = {
        "center_predictability": {
            "linear": {"before": 0.99, "after": 0.39},
            "forest": {"before": 1.0, "after": 0.98},
        },
        "not_harmonized": {
            "counts": {"tied within a center": 2},
            "features": {"T2__a": "tied within a center", "T2__b": "tied within a center"},
            "action": {"tied within a center": "dropped"},
        },
        "prevalence": {
            "rec": {
                "prevalence": {"A": 0.1, "B": 0.6},
                "n": {"A": 30, "B": 30},
                "test": "Fisher's exact test",
                "p": 4e-05,
                "alpha": 0.01,
                "differs": True,
            }
        },
    }
    body = combat_section(summary, pd.DataFrame(), pd.DataFrame())
    assert "A random forest still tells the centers apart (AUC 0.98)" in body
    assert "although a linear model can no longer (AUC 0.39)" in body
    assert "harmonisation did not remove the center signal" in body
    assert "2 tied within a center, dropped: T2__a, T2__b" in body
    assert "A 10% of 30, B 60% of 30; Fisher&#x27;s exact test p = 4e-05 &lt; 0.01" in body
    summary["center_predictability"]["forest"]["after"] = 0.55
    body = combat_section(summary, pd.DataFrame(), pd.DataFrame())
    assert "still tells" not in body and "nor a random forest (AUC 0.55)" in body
