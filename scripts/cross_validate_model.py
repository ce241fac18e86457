"""Glue for rule cross_validate_model: out-of-fold predictions, chain refit per fold."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import cross_validate_model


def main(sm) -> None:
    setup_logging(sm.log[0])
    cross_validate_model(
        list(sm.input.tables),
        list(sm.input.sheets),
        sm.input.robust,
        sm.wildcards.endpoint,
        sm.wildcards.model,
        sm.params.cfg,
        sm.output.predictions,
        n_jobs=sm.threads,
        fitted_model=sm.input.get("model"),
    )


main(snakemake)  # noqa: F821
