"""Reproducibility of features across readers: ICC per feature and an ICC filter.

The default ICC is ``ICC(A,1)`` in pingouin 0.7's labels (McGraw & Wong 1996) =
ICC(2,1) in Shrout & Fleiss' terms: two-way random effects, absolute agreement,
single rater. That is the one for inter-reader agreement: readers are a sample
of possible readers (random), a systematic offset between readers counts as
disagreement (absolute), and the model will use one reader's segmentation
(single). pingouin 0.7 labels its six ICCs ``ICC(1,1)``, ``ICC(A,1)``,
``ICC(C,1)``, ``ICC(1,k)``, ``ICC(A,k)``, ``ICC(C,k)``; all are available here.

The ICCs and their 95 % confidence intervals are computed from the two-way
ANOVA mean squares for all features at once (numpy/scipy), with pingouin's
formulas, because ``pingouin.intraclass_corr`` runs a pandas ANOVA per feature
(about 50 ms each: minutes for thousands of features x reader pairs). The unit
tests check the values against pingouin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import f as fdist
from sklearn.base import BaseEstimator, TransformerMixin

from radstudy.errors import CaseError

DEFAULTS: dict = {"enabled": True, "icc_type": "ICC(A,1)", "threshold": 0.75}

ICC_TYPES = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)")
CATEGORIES = ((0.5, "poor"), (0.75, "moderate"), (0.9, "good"), (np.inf, "excellent"))
COLUMNS = ["feature", "icc", "low", "high", "category", "n_cases"]


def category(icc: float) -> str:
    """poor < 0.5 <= moderate < 0.75 <= good < 0.9 <= excellent (Koo & Li 2016)."""
    if not np.isfinite(icc):
        return "undefined"
    for upper, name in CATEGORIES:
        if icc < upper:
            return name
    return "excellent"


def icc_cube(
    cube: np.ndarray, icc_type: str = "ICC(A,1)", alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ICC, lower and upper CI bound per feature of ``cube`` (targets x raters x features).

    Same formulas as ``pingouin.intraclass_corr`` 0.7 (complete, balanced data).
    Features without variation give NaN.
    """
    if icc_type not in ICC_TYPES:
        raise ValueError(f"icc_type {icc_type!r}: choose from {ICC_TYPES}")
    n, k, _ = cube.shape
    grand = cube.mean(axis=(0, 1))
    ss_r = k * ((cube.mean(axis=1) - grand) ** 2).sum(axis=0)
    ss_c = n * ((cube.mean(axis=0) - grand) ** 2).sum(axis=0)
    ss_t = ((cube - grand) ** 2).sum(axis=(0, 1))
    ss_e = np.maximum(ss_t - ss_r - ss_c, 0.0)
    df1, df1kd, df2kd = n - 1, n * (k - 1), (n - 1) * (k - 1)
    msb, msj, mse = ss_r / df1, ss_c / (k - 1), ss_e / df2kd
    msw = (ss_c + ss_e) / df1kd
    q = 1 - alpha / 2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if icc_type in ("ICC(1,1)", "ICC(1,k)"):
            f1 = msb / msw
            fl, fu = f1 / fdist.ppf(q, df1, df1kd), f1 * fdist.ppf(q, df1kd, df1)
            if icc_type == "ICC(1,1)":
                icc = (msb - msw) / (msb + (k - 1) * msw)
                low, high = (fl - 1) / (fl + (k - 1)), (fu - 1) / (fu + (k - 1))
            else:
                icc, low, high = (msb - msw) / msb, 1 - 1 / fl, 1 - 1 / fu
        elif icc_type in ("ICC(C,1)", "ICC(C,k)"):
            f3 = msb / mse
            fl, fu = f3 / fdist.ppf(q, df1, df2kd), f3 * fdist.ppf(q, df2kd, df1)
            if icc_type == "ICC(C,1)":
                icc = (msb - mse) / (msb + (k - 1) * mse)
                low, high = (fl - 1) / (fl + (k - 1)), (fu - 1) / (fu + (k - 1))
            else:
                icc, low, high = (msb - mse) / msb, 1 - 1 / fl, 1 - 1 / fu
        else:  # ICC(A,1) / ICC(A,k): McGraw & Wong's CI with Satterthwaite's df
            icc = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
            fj = msj / mse
            vn = df2kd * (k * icc * fj + n * (1 + (k - 1) * icc) - k * icc) ** 2
            vd = df1 * k**2 * icc**2 * fj**2 + (n * (1 + (k - 1) * icc) - k * icc) ** 2
            v = vn / vd
            f2u, f2l = fdist.ppf(q, n - 1, v), fdist.ppf(q, v, n - 1)
            low = n * (msb - f2u * mse) / (f2u * (k * msj + (k * n - k - n) * mse) + n * msb)
            high = n * (f2l * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f2l * msb)
            if icc_type == "ICC(A,k)":
                icc = (msb - mse) / (msb + (msj - mse) / n)
                low, high = low * k / (1 + low * (k - 1)), high * k / (1 + high * (k - 1))
    # no variation at all (relative to the feature's magnitude): ICC undefined
    flat = ss_t <= (1e-12 * np.maximum(1.0, np.abs(grand))) ** 2 * n * k
    out = []
    for a in (icc, low, high):
        a = np.array(a, dtype=float, copy=True)
        a[flat | ~np.isfinite(a)] = np.nan
        out.append(a)
    return out[0], out[1], out[2]


def _feature_cols(long: pd.DataFrame, rater_col: str, target_col: str) -> list[str]:
    return sorted(
        c
        for c in long.columns
        if c not in (rater_col, target_col)
        and not str(c).startswith("clinical__")
        and pd.api.types.is_numeric_dtype(long[c])
    )


def icc_table(
    long: pd.DataFrame,
    rater_col: str = "reader",
    target_col: str = "case_id",
    icc_type: str = "ICC(A,1)",
    raters: Sequence[str] | None = None,
) -> pd.DataFrame:
    """ICC per feature from a long table (one row per case x reader, feature columns).

    Columns: feature, icc, low, high (95 % CI), category, n_cases; sorted by feature.
    ``raters`` (default: all in the table) restricts the readers compared. Cases that
    lack one of the readers are dropped; a case with a missing value of a feature is
    dropped for that feature only. Fewer than 3 complete cases or no variation: ICC NaN,
    category "undefined".
    """
    if isinstance(rater_col, list | tuple):  # earlier signature: icc_table(long, raters)
        raters, rater_col = list(rater_col), "reader"
    feats = _feature_cols(long, rater_col, target_col)
    if raters is None:
        raters = sorted(long[rater_col].astype(str).unique())
    raters = [str(r) for r in raters]
    sub = long[long[rater_col].astype(str).isin(raters)]
    dup = sub.duplicated([target_col, rater_col], keep=False)
    if dup.any():
        row = sub[dup].iloc[0]
        raise CaseError(
            row[target_col],
            "reader feature table",
            f"reader {row[rater_col]} has {int(dup.sum())} rows for this case: keep one",
        )
    wide = {
        r: part.set_index(target_col)[feats]
        for r, part in sub.assign(**{rater_col: sub[rater_col].astype(str)}).groupby(rater_col)
    }
    if len(wide) < 2 or len(wide) < len(raters) or not feats:
        rows = {"feature": feats, "icc": np.nan, "low": np.nan, "high": np.nan}
        return pd.DataFrame(rows).assign(category="undefined", n_cases=0)[COLUMNS]
    cases = sorted(set.intersection(*(set(map(str, w.index)) for w in wide.values())))
    cube = np.stack(
        [wide[r].set_axis(wide[r].index.astype(str)).loc[cases].to_numpy(float) for r in raters],
        axis=1,
    )  # cases x raters x features
    icc = np.full(len(feats), np.nan)
    low, high = icc.copy(), icc.copy()
    n_cases = np.zeros(len(feats), int)
    # features sharing the same complete cases are computed together
    ok = ~np.isnan(cube).any(axis=1)  # cases x features
    patterns = pd.Series([ok[:, j].tobytes() for j in range(len(feats))])
    for _, idx in patterns.groupby(patterns).groups.items():
        j = np.asarray(idx)
        rows = ok[:, j[0]]
        n_cases[j] = rows.sum()
        if rows.sum() >= 3:
            icc[j], low[j], high[j] = icc_cube(cube[rows][:, :, j], icc_type)
    return pd.DataFrame(
        {
            "feature": feats,
            "icc": icc,
            "low": low,
            "high": high,
            "category": [category(v) for v in icc],
            "n_cases": n_cases,
        }
    )


def inter_intra(
    long: pd.DataFrame,
    readers: Sequence[str],
    repeat_pairs: dict[str, str],
    icc_type: str = "ICC(A,1)",
    rater_col: str = "reader",
    target_col: str = "case_id",
) -> pd.DataFrame:
    """Inter-observer ICC across ``readers`` and intra-observer ICC per repeat pair.

    ``repeat_pairs`` maps a repeat reading's reader label to the reader who repeated
    it (e.g. ``{"R1_repeat": "R1"}``). Tidy result: kind (inter/intra), raters,
    feature, icc, low, high, category, n_cases; sorted by kind, raters, feature.
    """
    frames = []
    kw = {"rater_col": rater_col, "target_col": target_col, "icc_type": icc_type}
    if len(readers) > 1:
        t = icc_table(long, raters=list(readers), **kw)
        frames.append(t.assign(kind="inter", raters="+".join(readers)))
    for repeat, original in sorted(repeat_pairs.items()):
        t = icc_table(long, raters=[original, repeat], **kw)
        frames.append(t.assign(kind="intra", raters=f"{original}+{repeat}"))
    cols = ["kind", "raters", *COLUMNS]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames)[cols]
    return out.sort_values(["kind", "raters", "feature"]).reset_index(drop=True)


def robust_features(icc: pd.DataFrame, threshold: float = 0.75) -> list[str]:
    """Features whose ICC reaches ``threshold`` in every row given (undefined = not robust).

    With several rows per feature (e.g. inter and intra), a feature must pass all.
    """
    passed = (icc["icc"] >= threshold).groupby(icc["feature"]).all()
    return sorted(passed.index[passed])


class ICCFilter(BaseEstimator, TransformerMixin):
    """Keep the radiomics columns listed in ``keep``; other columns pass through.

    ``keep`` comes from training cases only (rule compute_icc); None keeps all.
    Columns of the deep and clinical groups and meta columns (center, split) are
    never dropped here. ``selected_``: radiomics columns kept; ``reasons_``: feature
    -> why it was kept or dropped.
    """

    def __init__(self, keep: Sequence[str] | None = None):
        self.keep = keep

    def fit(self, X: pd.DataFrame, y=None):
        from radstudy.tables import column_group

        keep = set(self.keep or [])
        radiomics = [c for c in X.columns if column_group(c) == "radiomics"]
        self.columns_ = [
            c for c in X.columns if self.keep is None or column_group(c) != "radiomics" or c in keep
        ]
        kept = set(self.columns_)
        self.selected_ = [c for c in radiomics if c in kept]
        self.dropped_ = [c for c in X.columns if c not in kept]
        self.reasons_ = pd.Series(
            {
                c: ("ICC filter off" if self.keep is None else "reproducible (ICC)")
                if c in kept
                else "ICC below threshold"
                for c in radiomics
            },
            dtype=object,
        ).sort_index()
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.columns_]
