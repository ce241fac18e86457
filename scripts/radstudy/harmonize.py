"""ComBat harmonisation as a scikit-learn transformer: fit once, map new centers.

Fitting uses neuroCombat (Fortin et al. 2018) to estimate the grand mean,
pooled variance, covariate effects and the empirical-Bayes batch effects
(gamma*, delta*). Applying them is written here from the ComBat equations
(Johnson, Li & Rabinovic 2007) because neuroCombat's own apply path
(``neuroCombatFromTraining``) and its ``ref_batch`` option crash on numpy 2.

A batch (center) not seen at fit time is mapped onto the frozen reference:
its rows are standardised with the frozen grand mean, pooled variance and
covariate effects, and only that batch's location/scale (gamma, delta) are
estimated from its own rows, with the same empirical-Bayes shrinkage across
features. Nothing learned at fit time changes.
"""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

log = logging.getLogger(__name__)
# the package re-exports the function under the module's name; we need the module
nc = importlib.import_module("neuroCombat.neuroCombat")


class ComBat(BaseEstimator, TransformerMixin):
    """ComBat over the feature columns of a DataFrame holding a batch column.

    Parameters
    ----------
    batch_col : column with the batch (center) label; dropped by ``transform``.
    covariate_cols : numeric columns whose effects are preserved (also dropped
        from the output unless they are ``clinical__`` columns, which pass through).
    parametric, eb, mean_only : ComBat variants (as in sva::ComBat).
    """

    def __init__(
        self,
        batch_col="center",
        covariate_cols=(),
        parametric=True,
        eb=True,
        mean_only=False,
        ref_batch=None,
    ):
        self.batch_col = batch_col
        self.covariate_cols = covariate_cols
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch

    # ------------------------------------------------------------------ columns
    def _feature_cols(self, X: pd.DataFrame) -> list[str]:
        skip = {self.batch_col, *self.covariate_cols}
        return [
            c
            for c in X.columns
            if c not in skip
            and not str(c).startswith("clinical__")
            and pd.api.types.is_numeric_dtype(X[c])
        ]

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y=None):
        X = X.sort_index()
        self.features_ = self._feature_cols(X)
        self.n_features_in_ = X.shape[1]
        batch = X[self.batch_col].astype(str).to_numpy()
        self.batches_ = sorted(set(batch))
        if len(self.batches_) < 2 or not self.features_:
            self.identity_ = True
            return self
        self.identity_ = False
        data = X[self.features_].to_numpy(float).T  # features x samples
        covars = pd.DataFrame({"batch": batch})
        cont = []
        for c in self.covariate_cols:
            covars[c] = X[c].to_numpy(float)
            cont.append(c)
        if self.ref_batch is None:
            est = nc.neuroCombat(
                dat=data,
                covars=covars,
                batch_col="batch",
                continuous_cols=cont or None,
                eb=self.eb,
                parametric=self.parametric,
                mean_only=self.mean_only,
            )["estimates"]
        else:
            est = self._fit_with_reference(data, batch, covars[cont].to_numpy(float))
        order = [str(b) for b in est["batches"]]
        self.grand_mean_ = np.asarray(est["stand.mean"])[:, 0]
        self.var_pooled_ = np.asarray(est["var.pooled"]).ravel()
        self.gamma_star_ = dict(zip(order, np.asarray(est["gamma.star"]), strict=True))
        self.delta_star_ = dict(zip(order, np.asarray(est["delta.star"], float), strict=True))
        # covariate effects: recover the betas from mod.mean = C @ B (exact least squares)
        if cont:
            C = X[list(self.covariate_cols)].to_numpy(float)
            M = np.asarray(est["mod.mean"]).T  # samples x features
            self.beta_ = np.linalg.lstsq(C, M, rcond=None)[0]
        else:
            self.beta_ = None
        self.fitted_data_ = None  # not kept: the estimator stays small
        return self

    def _fit_with_reference(self, data, batch, cont) -> dict:
        """ComBat with a reference batch (sva's ``ref.batch``) from neuroCombat's own steps.

        neuroCombat's wrapper crashes on numpy 2 when ``ref_batch`` is set (``np.int``),
        so its documented steps are called here in the same order with the reference
        level computed without it: the reference batch defines the grand mean and the
        pooled variance, and its own rows are left unchanged.
        """
        levels = sorted(set(batch))
        if str(self.ref_batch) not in levels:
            raise ValueError(f"ref_batch {self.ref_batch!r} is not among batches {levels}")
        codes = np.array([levels.index(b) for b in batch])
        ref_level = levels.index(str(self.ref_batch))
        Y = np.column_stack([codes, cont]) if cont.size else codes[:, None].astype(float)
        num_cols = list(range(1, Y.shape[1]))
        design = nc.make_design_matrix(Y, 0, [], num_cols, ref_level)
        counts = np.bincount(codes)
        info = {
            "batch_levels": np.arange(len(levels)),
            "ref_level": ref_level,
            "n_batch": len(levels),
            "n_sample": len(codes),
            "sample_per_batch": counts,
            "batch_info": [list(np.flatnonzero(codes == i)) for i in range(len(levels))],
            "design": design,
        }
        s_data, s_mean, v_pool, mod_mean = nc.standardize_across_features(data, design, info)
        ls = nc.fit_LS_model_and_find_priors(s_data, design, info, self.mean_only)
        if not self.eb:
            g, d = nc.find_non_eb_adjustments(s_data, ls, info)
        elif self.parametric:
            g, d = nc.find_parametric_adjustments(s_data, ls, info, self.mean_only)
        else:
            g, d = nc.find_non_parametric_adjustments(s_data, ls, info, self.mean_only)
        return {
            "batches": levels,
            "var.pooled": v_pool,
            "stand.mean": s_mean,
            "mod.mean": mod_mean,
            "gamma.star": g,
            "delta.star": d,
        }

    # ------------------------------------------------------------------ apply
    def _standardize(self, X: pd.DataFrame) -> np.ndarray:
        Z = X[self.features_].to_numpy(float)
        mean = self.grand_mean_[None, :]
        if self.beta_ is not None:
            mean = mean + X[list(self.covariate_cols)].to_numpy(float) @ self.beta_
        return (Z - mean) / np.sqrt(self.var_pooled_)[None, :], mean

    def _new_batch_params(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """gamma*, delta* of an unseen batch from its own standardised rows."""
        g_hat = S.mean(axis=0)
        d_hat = S.var(axis=0, ddof=1) if len(S) > 1 else np.ones(S.shape[1])
        d_hat[d_hat == 0] = 1.0
        if self.mean_only:
            d_hat = np.ones_like(d_hat)
        if not self.eb or len(S) < 2:
            return g_hat, d_hat
        if not self.parametric:
            return tuple(np.asarray(v) for v in nc.int_eprior(S.T, g_hat, d_hat))
        g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
        if self.mean_only:
            return nc.postmean(g_hat, g_bar, 1, 1, t2), d_hat
        a, b = nc.aprior(d_hat), nc.bprior(d_hat)
        g_star, d_star = nc.it_sol(S.T, g_hat, d_hat, g_bar, t2, a, b)
        return np.asarray(g_star), np.asarray(d_star)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        drop = [self.batch_col] + [
            c for c in self.covariate_cols if not str(c).startswith("clinical__")
        ]
        out = X.drop(columns=[c for c in drop if c in X.columns]).copy()
        if getattr(self, "identity_", True) or not len(X):
            return out
        S, mean = self._standardize(X)
        batch = X[self.batch_col].astype(str).to_numpy()
        adj = np.empty_like(S)
        self.new_batches_ = {}
        for b in sorted(set(batch)):
            rows = batch == b
            if b in self.gamma_star_:
                g, d = self.gamma_star_[b], self.delta_star_[b]
            else:
                g, d = self._new_batch_params(S[rows])
                self.new_batches_[b] = {"n": int(rows.sum())}
                log.info(
                    "ComBat: unseen batch %s (%d rows) mapped onto the reference", b, rows.sum()
                )
            adj[rows] = (S[rows] - g[None, :]) / np.sqrt(d)[None, :]
        H = adj * np.sqrt(self.var_pooled_)[None, :] + mean
        out[self.features_] = H
        return out

    def summary(self) -> dict:
        """Parameters for the model card (per batch mean |gamma*| and mean delta*)."""
        if getattr(self, "identity_", True):
            return {"identity": True}
        return {
            "batches": self.batches_,
            "n_features": len(self.features_),
            "mean_abs_gamma": {b: float(np.mean(np.abs(g))) for b, g in self.gamma_star_.items()},
            "mean_delta": {b: float(np.mean(d)) for b, d in self.delta_star_.items()},
        }


def center_predictability(X: pd.DataFrame, batch: pd.Series, seed: int = 0) -> float:
    """CV AUC of predicting the center from the features (0.5 = indistinguishable).

    One-vs-rest macro AUC for more than two centers; logistic regression on
    standardised features inside a pipeline (refit per fold).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = batch.astype(str).to_numpy()
    n_splits = int(min(5, pd.Series(y).value_counts().min()))
    if n_splits < 2:
        return float("nan")
    model = make_pipeline(
        SimpleImputer(), StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)
    )
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, X.to_numpy(float), y, cv=cv, method="predict_proba")
    classes = np.unique(y)
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def pca_by_center(X: pd.DataFrame, batch: pd.Series) -> pd.DataFrame:
    """First two principal components of the standardised features, with the center."""
    from sklearn.decomposition import PCA

    Z = X.to_numpy(float)
    Z = (Z - np.nanmean(Z, 0)) / (np.nanstd(Z, 0) + 1e-12)
    pcs = PCA(n_components=2, random_state=0).fit_transform(np.nan_to_num(Z))
    return pd.DataFrame(
        {"PC1": pcs[:, 0], "PC2": pcs[:, 1], "center": batch.to_numpy()}, index=X.index
    )
