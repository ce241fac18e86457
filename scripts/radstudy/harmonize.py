"""ComBat harmonisation as a scikit-learn transformer: fit once, map new centers.

Fitting uses neuroCombat 0.2.12 (Fortin et al. 2018) to estimate the grand
mean, pooled variance, covariate effects and the empirical-Bayes batch effects
(gamma*, delta*). Applying them is written here from the ComBat equations
(Johnson, Li & Rabinovic 2007) because neuroCombat's own apply path
(``neuroCombatFromTraining``) and its ``ref_batch`` option crash on numpy 2.

A batch (center) not seen at fit time is mapped onto the frozen reference:
its rows are standardised with the frozen grand mean, pooled variance and
covariate effects, and only that batch's location/scale (gamma, delta) are
estimated from its own rows, with the same empirical-Bayes shrinkage across
features that ComBat applies to every batch (priors from the batch's own
features). Nothing learned at fit time changes.

All variants are checked against R ``sva::ComBat`` (tests/data/combat_reference).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from radstudy.errors import CaseError
from radstudy.tables import column_group

log = logging.getLogger(__name__)
# the package re-exports the function under the module's name; we need the module
nc = importlib.import_module("neuroCombat.neuroCombat")

CLINICAL = "clinical__"
# per feature group: left as it is, ComBat on the center alone, ComBat preserving covariates
MODES = ("none", "combat", "combat_covariates")
# reasons a feature is tied / (near-)constant within a training center; with tied="drop"
# these features are removed, else they pass through unharmonised
TIED_REASONS = ("constant within a center", "near-constant within a center", "tied within a center")
NEAR_ZERO = 1e-10  # within-center variance below this share of the feature's variance


# --------------------------------------------------------------------- EB of one batch
# The empirical-Bayes steps below are the published ComBat equations (Johnson 2007,
# eqs. 3.1-3.4; sva::ComBat's it.sol / int.eprior), written here so that an unseen
# batch gets exactly the treatment each training batch got, NaN cells allowed.
def _batch_hat(S: np.ndarray, mean_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares gamma_hat (batch mean) and delta_hat (batch variance), rows x features."""
    g_hat = np.nanmean(S, axis=0)
    if mean_only or len(S) < 2:
        return g_hat, np.ones(S.shape[1])
    d_hat = np.nanvar(S, axis=0, ddof=1)
    d_hat[~np.isfinite(d_hat) | (d_hat == 0)] = 1.0  # as neuroCombat/sva: zero variance -> 1
    return g_hat, d_hat


def eb_parametric(
    S: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray, mean_only: bool, conv: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Parametric EB (normal prior on gamma, inverse-gamma on delta) for one batch."""
    g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
    if mean_only:  # sva: postmean(gamma.hat, gamma.bar, 1, 1, t2)
        return (t2 * g_hat + g_bar) / (t2 + 1.0), np.ones_like(d_hat)
    m, s2 = d_hat.mean(), d_hat.var(ddof=1)
    a, b = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
    n = np.sum(~np.isnan(S), axis=0)
    g_old, d_old = g_hat.copy(), d_hat.copy()
    for _ in range(10_000):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        d_new = (0.5 * np.nansum((S - g_new) ** 2, axis=0) + b) / (n / 2.0 + a - 1.0)
        # sva's convergence test divides by g.old without abs(); kept so results match R
        change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if change <= conv:
            break
    return g_old, d_old


def eb_nonparametric(
    S: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Non-parametric EB: each feature's gamma*/delta* is the likelihood-weighted mean of
    the other features' (gamma_hat, delta_hat), as sva's int.eprior.

    Vectorised over features with log-likelihoods (softmax) instead of sva's raw
    products, which underflow to 0/0 for large batches; the values are the same
    wherever sva's do not underflow.
    """
    valid = ~np.isnan(S)
    n = valid.sum(axis=0).astype(float)  # rows per feature i
    X = np.where(valid, S, 0.0)
    sx, sx2 = X.sum(axis=0), (X**2).sum(axis=0)
    p = len(g_hat)
    g_star, d_star = np.empty(p), np.empty(p)
    for start in range(0, p, 1024):  # blocks of features keep memory at 1024 x p
        i = np.arange(start, min(start + 1024, p))
        # loglik[i, j] = log N(x_i | g_j, d_j) summed over the batch's rows
        sum2 = sx2[i, None] - 2 * sx[i, None] * g_hat[None, :] + n[i, None] * g_hat[None, :] ** 2
        loglik = -0.5 * n[i, None] * np.log(2 * np.pi * d_hat[None, :]) - sum2 / (
            2 * d_hat[None, :]
        )
        loglik[np.arange(len(i)), i] = -np.inf  # feature i is left out of its own prior
        w = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        g_star[i], d_star[i] = w @ g_hat, w @ d_hat
    return g_star, d_star


def _top_share(Z: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature (column of Z): the largest share of one center's non-missing rows
    taken by a single value, and that center."""
    best = np.zeros(Z.shape[1])
    where = np.full(Z.shape[1], "", dtype=object)
    for b in sorted(set(batch)):
        S = np.sort(Z[batch == b], axis=0)  # NaN last
        n = np.sum(~np.isnan(S), axis=0)
        if len(S) < 2:
            continue
        eq = S[1:] == S[:-1]  # neighbours equal (NaN never equal)
        c = np.cumsum(eq, axis=0)
        run = c - np.maximum.accumulate(np.where(eq, 0, c), axis=0)  # current run of ties
        share = np.where(n > 1, (run.max(axis=0) + 1) / np.maximum(n, 1), 0.0)
        better = share > best
        best[better], where[better] = share[better], b
    return best, where


class ComBat(BaseEstimator, TransformerMixin):
    """ComBat over the feature columns of a DataFrame holding a batch column.

    Parameters
    ----------
    batch_col : column with the batch (center) label; dropped by ``transform``.
    covariate_cols : numeric columns whose effects are preserved. They are dropped
        from the output unless they are ``clinical__`` columns, which pass through.
    parametric, eb, mean_only : ComBat variants (as in sva::ComBat).
    ref_batch : batch left unchanged, onto which the others are mapped (sva ``ref.batch``).
    feature_prefixes : harmonise only numeric columns starting with one of these;
        None = every numeric column except batch, covariates and ``clinical__`` columns.
    min_new_batch : fewest rows an unseen batch needs for its gamma/delta to be estimated.
    groups : harmonise only columns of these feature groups (radiomics, deep, clinical;
        :func:`radstudy.tables.column_group`); None = as ``feature_prefixes`` says.
    passthrough_cols : columns never harmonised (e.g. another fit's covariates).
    tie_threshold : a feature whose most frequent value covers more than this share of
        one training center's (non-missing) rows, or whose variance within a center is
        ~0 (below 1e-10 of its overall variance), is not harmonised: ComBat would turn
        the tied value into a different constant per center. None = sva's rule only
        (exactly constant within a center).
    tied : what happens to those features: "pass" (kept unharmonised) or "drop".

    As sva::ComBat, a training batch with a single row switches to ``mean_only``
    (``mean_only_`` records what was used). The design (center + covariates) must
    have full rank: a covariate confounded with the center (e.g. constant within
    every training center) raises a one-line ``ValueError`` naming it and the
    centers. With a single training center a covariate constant there gets no effect.

    Fitted attributes: ``features_`` (harmonised columns), ``skipped_features_``
    (feature -> why left unadjusted), ``dropped_features_`` (tied features removed by
    ``tied="drop"``), ``tie_share_`` (tied feature -> [center, share of its most
    frequent value]), ``batches_``, ``grand_mean_``, ``var_pooled_``, ``beta_``
    (covariates x features or None), ``gamma_star_``/``delta_star_`` (batch -> array
    over ``features_``).
    """

    def __init__(
        self,
        batch_col: str = "center",
        covariate_cols: Sequence[str] = (),
        parametric: bool = True,
        eb: bool = True,
        mean_only: bool = False,
        ref_batch: str | None = None,
        feature_prefixes: Sequence[str] | None = None,
        min_new_batch: int = 2,
        groups: Sequence[str] | None = None,
        passthrough_cols: Sequence[str] = (),
        tie_threshold: float | None = None,
        tied: str = "pass",
    ):
        self.batch_col = batch_col
        self.covariate_cols = covariate_cols
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.feature_prefixes = feature_prefixes
        self.min_new_batch = min_new_batch
        self.groups = groups
        self.passthrough_cols = passthrough_cols
        self.tie_threshold = tie_threshold
        self.tied = tied

    # ------------------------------------------------------------------ columns
    def _candidate_cols(self, X: pd.DataFrame) -> list[str]:
        skip = {self.batch_col, *self.covariate_cols, *self.passthrough_cols}
        prefixes = tuple(self.feature_prefixes) if self.feature_prefixes is not None else None
        groups = set(self.groups) if self.groups is not None else None
        cols, dtypes = [], X.dtypes
        for c in X.columns:
            name = str(c)
            if c in skip or not pd.api.types.is_numeric_dtype(dtypes[c]):
                continue
            if groups is not None and column_group(name) not in groups:
                continue
            if groups is None and prefixes is None and name.startswith((CLINICAL, "missing__")):
                continue  # clinical columns and 0/1 gap indicators are not scanner effects
            if prefixes is not None and not name.startswith(prefixes):
                continue
            cols.append(c)
        return cols

    def _check_columns(self, X: pd.DataFrame, cols: Sequence[str]) -> None:
        missing = [c for c in [self.batch_col, *self.covariate_cols, *cols] if c not in X.columns]
        if missing:
            raise ValueError(f"ComBat: columns missing from the table: {missing[:5]}")

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y=None):
        """Estimate the reference (grand mean, pooled variance, betas) and batch effects."""
        X = X.sort_index(kind="stable")  # fit does not depend on row order
        self._check_columns(X, [])
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        batch = X[self.batch_col].astype(str).to_numpy()
        self.batches_ = sorted(set(batch))
        if self.tied not in ("pass", "drop"):
            raise ValueError(f"ComBat tied must be 'pass' or 'drop', not {self.tied!r}")
        cand = self._candidate_cols(X)
        self.tie_share_: dict[str, list] = {}
        self.skipped_features_ = self._skipped(X[cand], batch)
        self.features_ = [c for c in cand if c not in self.skipped_features_]
        drop = self.tied == "drop"
        self.dropped_features_ = [
            c for c, why in self.skipped_features_.items() if drop and why in TIED_REASONS
        ]
        by_reason: dict[str, list[str]] = {}
        for c, why in self.skipped_features_.items():
            by_reason.setdefault(why, []).append(c)
        for why, cols in sorted(by_reason.items()):  # one line per reason, not per feature
            shown = ", ".join(cols[:5]) + (f", ... ({len(cols) - 5} more)" if len(cols) > 5 else "")
            what = "dropped" if drop and why in TIED_REASONS else "not harmonised"
            log.warning("ComBat: %d features %s (%s): %s", len(cols), what, why, shown)
        self.identity_ = not self.features_
        self.is_fitted_ = True
        self.mean_only_ = bool(self.mean_only)
        if self.identity_:
            return self
        # empirical Bayes pools the batch effects across features: one feature has no
        # prior to shrink towards (NaN), so its batch effects are used as estimated
        self.eb_ = bool(self.eb and len(self.features_) > 1)
        if self.eb and not self.eb_:
            log.info("ComBat: a single feature (%s): no empirical Bayes", self.features_[0])
        if len(self.batches_) == 1:
            return self._fit_single_batch(X)
        counts = pd.Series(batch).value_counts()
        # as sva::ComBat: a batch with a single row has no variance estimate, so only
        # locations are adjusted (mean.only) for all batches
        self.mean_only_ = bool(self.mean_only or (counts < 2).any())
        if self.mean_only_ and not self.mean_only:
            log.warning(
                "ComBat: center %s has a single training row: adjusting means only",
                ", ".join(sorted(counts.index[counts < 2])),
            )
        cov = self._covariates(X)
        self._check_design(batch, cov)
        data = X[self.features_].to_numpy(float)
        # NaN cells are filled with their batch's feature mean for estimation only (that
        # leaves the batch mean unchanged); transform keeps them NaN.
        if np.isnan(data).any():
            means = pd.DataFrame(data).groupby(batch).transform("mean").to_numpy()
            data = np.where(np.isnan(data), means, data)
        if self.ref_batch is None:
            covars = pd.DataFrame({"batch": batch})
            names = [f"cov{i}" for i in range(cov.shape[1])]
            covars[names] = cov
            # neuroCombat prints its progress to stdout: keep it out of the rule's output;
            # with one feature its unused priors (variance over features) warn: quiet
            with contextlib.redirect_stdout(io.StringIO()) as progress, warnings.catch_warnings():
                if len(self.features_) < 2:
                    warnings.simplefilter("ignore", RuntimeWarning)
                est = nc.neuroCombat(
                    dat=data.T,
                    covars=covars,
                    batch_col="batch",
                    continuous_cols=names or None,
                    eb=self.eb_,
                    parametric=self.parametric,
                    mean_only=self.mean_only_,
                )["estimates"]
            log.debug("%s", progress.getvalue().strip())
        else:
            with warnings.catch_warnings():
                if len(self.features_) < 2:
                    warnings.simplefilter("ignore", RuntimeWarning)
                est = self._fit_with_reference(data.T, batch, cov)
        order = [str(b) for b in est["batches"]]
        self.grand_mean_ = np.asarray(est["stand.mean"], float)[:, 0]
        self.var_pooled_ = np.asarray(est["var.pooled"], float).ravel()
        gs, ds = np.asarray(est["gamma.star"], float), np.asarray(est["delta.star"], float)
        self.gamma_star_ = {b: gs[i].copy() for i, b in enumerate(order)}
        self.delta_star_ = {b: ds[i].copy() for i, b in enumerate(order)}
        # covariate effects: recover the betas from mod.mean = C @ B (exact least squares)
        if cov.shape[1]:
            M = np.asarray(est["mod.mean"], float).T  # samples x features
            self.beta_ = np.linalg.lstsq(cov, M, rcond=None)[0]
        else:
            self.beta_ = None
        return self

    def _fit_single_batch(self, X: pd.DataFrame):
        """One training center: it is the reference, left unchanged (gamma* = 0,
        delta* = 1), as sva's ``ref.batch``; its mean (covariate model) and residual
        variance standardise the rows, and unseen centers are mapped onto it by their
        own location/scale. sva/neuroCombat need two batches, hence this branch."""
        cov = self._covariates(X)
        data = X[self.features_].to_numpy(float)
        # a covariate constant in the one center has no estimable effect: effect 0
        varies = np.ptp(cov, axis=0) > 0 if cov.shape[1] else np.zeros(0, bool)
        for c in np.asarray(self.covariate_cols, dtype=object)[~varies]:
            log.warning(
                "ComBat: covariate %s is constant within the single training center %s: "
                "its effect cannot be estimated and is left out",
                c,
                self.batches_[0],
            )
        names = [c for c, v in zip(self.covariate_cols, varies, strict=True) if v]
        self._check_design(np.asarray(X[self.batch_col].astype(str)), cov[:, varies], names)
        design = np.column_stack([np.ones(len(X)), cov[:, varies]])
        filled = np.where(np.isnan(data), np.nanmean(data, axis=0), data)
        coef = np.linalg.lstsq(design, filled, rcond=None)[0]
        self.grand_mean_ = coef[0]
        if cov.shape[1]:
            self.beta_ = np.zeros((cov.shape[1], len(self.features_)))
            self.beta_[varies] = coef[1:]
        else:
            self.beta_ = None
        resid = filled - design @ coef
        self.var_pooled_ = np.mean(resid**2, axis=0)  # sva: 1/n of the squared residuals
        b = self.batches_[0]
        self.gamma_star_ = {b: np.zeros(len(self.features_))}
        self.delta_star_ = {b: np.ones(len(self.features_))}
        log.info("ComBat: a single training center (%s) is the reference", b)
        return self

    def _covariates(self, X: pd.DataFrame) -> np.ndarray:
        cols = list(self.covariate_cols)
        for c in cols:
            if not pd.api.types.is_numeric_dtype(X[c]):
                raise ValueError(f"ComBat covariate {c!r} must be numeric (encode it 0/1)")
        cov = X[cols].to_numpy(float) if cols else np.empty((len(X), 0))
        if np.isnan(cov).any():
            row = np.flatnonzero(np.isnan(cov).any(axis=1))[0]
            c = cols[int(np.flatnonzero(np.isnan(cov[row]))[0])]
            raise CaseError(
                X.index[row], c, "ComBat covariate is missing: fill it in the cohort sheet"
            )
        return cov

    def _check_design(
        self, batch: np.ndarray, cov: np.ndarray, names: Sequence[str] | None = None
    ) -> None:
        """The center + covariate design must have full rank: else name the covariate
        confounded with the center (one line)."""
        if not cov.shape[1]:
            return
        levels = sorted(set(batch))
        design = (batch[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(float)
        for j, c in enumerate(self.covariate_cols if names is None else names):
            design = np.column_stack([design, cov[:, j]])
            if np.linalg.matrix_rank(design) == design.shape[1]:
                continue
            values = {b: np.unique(cov[batch == b, j]) for b in levels}
            if all(len(v) == 1 for v in values.values()):
                where = ", ".join(f"{b}: {v[0]:g}" for b, v in values.items())
                raise ValueError(
                    f"ComBat covariate {c!r} is confounded with the center: it is constant "
                    f"within every training center ({where}), so its effect cannot be told "
                    "apart from the center's; remove it from harmonization.covariates"
                )
            raise ValueError(
                f"ComBat covariate {c!r} is a linear combination of the center and the "
                f"covariates before it (training centers {', '.join(levels)}); remove it "
                "from harmonization.covariates"
            )

    def _skipped(self, F: pd.DataFrame, batch: np.ndarray) -> dict[str, str]:
        """Features left unadjusted: all missing or constant within a batch (as sva), and
        with ``tie_threshold`` near-constant or mostly tied within a batch."""
        grouped = F.groupby(batch)
        var, count = grouped.var().to_numpy(), grouped.count().to_numpy()
        var0 = np.nan_to_num(var, nan=0.0)
        empty = (count == 0).any(axis=0)
        constant = ((var0 == 0) & (count > 1)).any(axis=0) & ~empty
        skipped = {c: "no values in a center" for c in F.columns[empty]}
        if self.tie_threshold is not None and len(F.columns):
            total = np.nan_to_num(F.var().to_numpy(float), nan=0.0)
            near = ((var0 <= NEAR_ZERO * total) & (count > 1)).any(axis=0) & ~empty & ~constant
            share, where = _top_share(F.to_numpy(float), batch)
            tied = (share > self.tie_threshold) & ~empty & ~constant & ~near
            skipped.update({c: "near-constant within a center" for c in F.columns[near]})
            skipped.update({c: "tied within a center" for c in F.columns[tied]})
            self.tie_share_ = {
                str(c): [str(where[i]), round(float(share[i]), 4)]
                for i, c in enumerate(F.columns)
                if skipped.get(c) in TIED_REASONS[1:]
            }
        skipped.update({c: "constant within a center" for c in F.columns[constant]})
        return {c: skipped[c] for c in F.columns if c in skipped}

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
        info = {
            "batch_levels": np.arange(len(levels)),
            "ref_level": ref_level,
            "n_batch": len(levels),
            "n_sample": len(codes),
            "sample_per_batch": np.bincount(codes),
            "batch_info": [list(np.flatnonzero(codes == i)) for i in range(len(levels))],
            "design": design,
        }
        s_data, s_mean, v_pool, mod_mean = nc.standardize_across_features(data, design, info)
        ls = nc.fit_LS_model_and_find_priors(s_data, design, info, self.mean_only_)
        if not self.eb_:
            g, d = nc.find_non_eb_adjustments(s_data, ls, info)
        elif self.parametric:
            g, d = nc.find_parametric_adjustments(s_data, ls, info, self.mean_only_)
        else:
            g, d = nc.find_non_parametric_adjustments(s_data, ls, info, self.mean_only_)
        return {
            "batches": levels,
            "var.pooled": v_pool,
            "stand.mean": s_mean,
            "mod.mean": mod_mean,
            "gamma.star": g,
            "delta.star": d,
        }

    # ------------------------------------------------------------------ apply
    def _standardize(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Rows standardised with the frozen reference; also returns the row means."""
        Z = X[self.features_].to_numpy(float)
        mean = np.broadcast_to(self.grand_mean_, Z.shape)
        if self.beta_ is not None:
            mean = mean + self._covariates(X) @ self.beta_
        return (Z - mean) / np.sqrt(self.var_pooled_)[None, :], mean

    def new_batch_params(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """gamma*, delta* of an unseen batch from its own standardised rows (rows x features).

        The same estimator ComBat applies to each training batch: least-squares
        gamma_hat/delta_hat, then the configured empirical-Bayes shrinkage with priors
        from this batch's own features.
        """
        mean_only = getattr(self, "mean_only_", self.mean_only)
        g_hat, d_hat = _batch_hat(S, mean_only)
        if not getattr(self, "eb_", self.eb):
            return g_hat, d_hat
        if self.parametric:
            return eb_parametric(S, g_hat, d_hat, mean_only)
        return eb_nonparametric(S, g_hat, d_hat)

    def batch_params(self, X: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(gamma*, delta*) for each batch in ``X``: frozen ones, or estimated for new ones."""
        S, _ = self._standardize(X)
        batch = X[self.batch_col].astype(str).to_numpy()
        params = {}
        for b in sorted(set(batch)):
            if b in self.gamma_star_:
                params[b] = (self.gamma_star_[b], self.delta_star_[b])
                continue
            rows = batch == b
            if rows.sum() < max(2, self.min_new_batch):
                raise CaseError(
                    X.index[rows][0],
                    f"center {b}",
                    f"center not seen when ComBat was fitted has {int(rows.sum())} row(s); "
                    f"at least {max(2, self.min_new_batch)} are needed to estimate its "
                    "location/scale: harmonise the center's cases together",
                )
            params[b] = self.new_batch_params(S[rows])
            log.info("ComBat: unseen batch %s (%d rows) mapped onto the reference", b, rows.sum())
        return params

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Harmonised features; batch, non-clinical covariate and dropped tied columns
        dropped."""
        drop = [self.batch_col] + [
            c for c in self.covariate_cols if not str(c).startswith(CLINICAL)
        ]
        drop += list(getattr(self, "dropped_features_", []))
        out = X.drop(columns=[c for c in drop if c in X.columns]).copy()
        if getattr(self, "identity_", True) or not len(X):
            return out
        self._check_columns(X, self.features_)
        S, mean = self._standardize(X)
        batch = X[self.batch_col].astype(str).to_numpy()
        adj = np.empty_like(S)
        for b, (g, d) in self.batch_params(X).items():
            rows = batch == b
            adj[rows] = (S[rows] - g[None, :]) / np.sqrt(d)[None, :]
        new = pd.DataFrame(
            adj * np.sqrt(self.var_pooled_)[None, :] + mean, index=out.index, columns=self.features_
        )  # one block, not thousands of column assignments
        return pd.concat([out.drop(columns=self.features_), new], axis=1)[list(out.columns)]

    # ------------------------------------------------------------------ persist
    def summary(self) -> dict:
        """Parameters for the model card (per batch mean |gamma*| and mean delta*)."""
        if getattr(self, "identity_", True):
            return {"identity": True, "n_dropped": len(getattr(self, "dropped_features_", []))}
        return {
            "batches": self.batches_,
            "n_features": len(self.features_),
            "n_skipped": len(self.skipped_features_),
            "n_dropped": len(self.dropped_features_),
            "mean_abs_gamma": {b: float(np.mean(np.abs(g))) for b, g in self.gamma_star_.items()},
            "mean_delta": {b: float(np.mean(d)) for b, d in self.delta_star_.items()},
        }

    def to_json(self, full: bool = False) -> str:
        """JSON of the settings and fitted parameters (per feature arrays when ``full``)."""
        doc = {"settings": self.get_params(), **self.summary()}
        if full and not getattr(self, "identity_", True):
            doc["features"] = list(map(str, self.features_))
            doc["skipped_features"] = self.skipped_features_
            doc["dropped_features"] = list(self.dropped_features_)
            doc["grand_mean"] = self.grand_mean_.tolist()
            doc["var_pooled"] = self.var_pooled_.tolist()
            doc["beta"] = None if self.beta_ is None else self.beta_.tolist()
            doc["gamma_star"] = {b: v.tolist() for b, v in self.gamma_star_.items()}
            doc["delta_star"] = {b: v.tolist() for b, v in self.delta_star_.items()}
        doc["settings"]["covariate_cols"] = list(self.covariate_cols)
        if self.feature_prefixes is not None:
            doc["settings"]["feature_prefixes"] = list(self.feature_prefixes)
        return json.dumps(doc, indent=1, sort_keys=True)


class GroupComBat(BaseEstimator, TransformerMixin):
    """ComBat per feature group (config ``harmonization.groups``).

    Each group (radiomics, deep, clinical) is left as it is (``none``), harmonised on
    the center alone (``combat``), or harmonised preserving the effects of
    ``covariate_cols`` (``combat_covariates``). Groups with the same mode share one
    :class:`ComBat` fit (their features pool the empirical-Bayes priors); covariate
    columns are never harmonised themselves. Other columns (groups not listed, gap
    indicators, text) pass through. As :class:`ComBat`, ``transform`` drops the batch
    column and non-clinical covariates, and the tied features when ``tied="drop"``.

    Fitted: ``combats_`` (mode -> fitted ComBat), ``batches_``, ``features_``,
    ``skipped_features_``, ``dropped_features_``, ``tie_share_``, ``identity_``.
    """

    def __init__(
        self,
        groups: Sequence[tuple[str, str]] = (
            ("radiomics", "combat"),
            ("deep", "combat"),
            ("clinical", "none"),
        ),
        batch_col: str = "center",
        covariate_cols: Sequence[str] = (),
        parametric: bool = True,
        eb: bool = True,
        mean_only: bool = False,
        ref_batch: str | None = None,
        min_new_batch: int = 2,
        tie_threshold: float | None = None,
        tied: str = "pass",
    ):
        self.groups = groups
        self.batch_col = batch_col
        self.covariate_cols = covariate_cols
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.min_new_batch = min_new_batch
        self.tie_threshold = tie_threshold
        self.tied = tied

    def modes(self) -> dict[str, list[str]]:
        """Harmonising mode -> its groups (groups with mode ``none`` left out)."""
        by: dict[str, list[str]] = {}
        for group, mode in dict(self.groups).items():
            if mode not in MODES:
                raise ValueError(
                    f"harmonisation of group {group!r}: {mode!r} is not one of {MODES}"
                )
            if mode != "none":
                by.setdefault(mode, []).append(group)
        return by

    def fit(self, X: pd.DataFrame, y=None):
        if self.batch_col not in X.columns:
            raise ValueError(f"ComBat: columns missing from the table: {[self.batch_col]}")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.batches_ = sorted(set(X[self.batch_col].astype(str)))
        covs = tuple(self.covariate_cols)
        self.combats_: dict[str, ComBat] = {}
        present = {column_group(str(c)) for c in X.columns}
        for mode, groups in self.modes().items():
            if not present & set(groups):
                continue  # no column of these groups in the table
            self.combats_[mode] = ComBat(
                batch_col=self.batch_col,
                covariate_cols=covs if mode == "combat_covariates" else (),
                parametric=self.parametric,
                eb=self.eb,
                mean_only=self.mean_only,
                ref_batch=self.ref_batch,
                min_new_batch=self.min_new_batch,
                groups=tuple(groups),
                passthrough_cols=covs,
                tie_threshold=self.tie_threshold,
                tied=self.tied,
            ).fit(X)
        fits = list(self.combats_.values())
        self.features_ = [c for cb in fits for c in cb.features_]
        self.skipped_features_ = {c: w for cb in fits for c, w in cb.skipped_features_.items()}
        self.dropped_features_ = [c for cb in fits for c in cb.dropped_features_]
        self.tie_share_ = {c: v for cb in fits for c, v in cb.tie_share_.items()}
        self.identity_ = not self.features_ and not self.dropped_features_
        self.is_fitted_ = True
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each mode's features harmonised by its fit; the other columns as they are."""
        drop = [self.batch_col] + [
            c for c in self.covariate_cols if not str(c).startswith(CLINICAL)
        ]
        drop += list(getattr(self, "dropped_features_", []))
        out = X.drop(columns=[c for c in drop if c in X.columns])
        if not len(X):
            return out
        order = list(out.columns)
        for cb in getattr(self, "combats_", {}).values():
            if cb.identity_:
                continue
            H = cb.transform(X)
            out = pd.concat([out.drop(columns=cb.features_), H[cb.features_]], axis=1)
        return out[order]

    def summary(self) -> dict:
        """Per mode: its groups and its ComBat's summary; counts of skipped features."""
        if not getattr(self, "is_fitted_", False):
            return {"identity": True}
        modes = self.modes()
        return {
            "batches": self.batches_,
            "n_features": len(self.features_),
            "n_skipped": len(self.skipped_features_),
            "n_dropped": len(self.dropped_features_),
            "modes": {m: {"groups": modes[m], **cb.summary()} for m, cb in self.combats_.items()},
        }

    def to_json(self, full: bool = False) -> str:
        """JSON of the settings and each mode's fit (per feature arrays when ``full``)."""
        doc = {"settings": self.get_params(), **self.summary()}
        doc["settings"]["groups"] = dict(self.groups)
        doc["settings"]["covariate_cols"] = list(self.covariate_cols)
        if full:
            doc["fits"] = {m: json.loads(cb.to_json(full=True)) for m, cb in self.combats_.items()}
        return json.dumps(doc, indent=1, sort_keys=True, default=str)


# ------------------------------------------------------------------------ diagnostics
def center_predictability(
    X: pd.DataFrame, batch: pd.Series, seed: int = 0, model: str = "linear"
) -> float:
    """CV AUC of predicting the center from the features (0.5 = indistinguishable).

    One-vs-rest macro AUC for more than two centers, stratified 5-fold CV seeded by
    ``seed``, the model refit per fold. ``model``: "linear" (logistic regression on
    standardised features) or "forest" (a random forest of 100 trees, seeded: it sees
    center signal a linear model misses, e.g. a feature tied at a different value in
    each center). NaN when a center has fewer than 2 rows. After ComBat has equalised
    the center means exactly, cross-validation can give values below 0.5 (each fold's
    training rows carry the opposite of the held-out rows' residual offset); read
    |AUC - 0.5|.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    order = np.argsort(np.asarray(X.index.astype(str)), kind="stable")
    Z = X.to_numpy(float)[order]
    y = batch.astype(str).to_numpy()[order]
    n_splits = int(min(5, pd.Series(y).value_counts().min()))
    if n_splits < 2 or len(np.unique(y)) < 2 or not Z.shape[1]:
        return float("nan")
    if model == "forest":
        from sklearn.ensemble import RandomForestClassifier

        clf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
        model = make_pipeline(SimpleImputer(), clf)
    elif model == "linear":
        model = make_pipeline(
            SimpleImputer(), StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)
        )
    else:
        raise ValueError(f"center_predictability: model {model!r} is not 'linear' or 'forest'")
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, Z, y, cv=cv, method="predict_proba")
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
