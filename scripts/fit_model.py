"""Glue for rule fit_model: fit one model's whole pipeline on the training rows."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import fit_model


def main(sm) -> None:
    setup_logging(sm.log[0])
    fit_model(
        list(sm.input.tables),
        list(sm.input.sheets),
        sm.input.robust,
        sm.wildcards.endpoint,
        sm.wildcards.model,
        sm.params.cfg,
        sm.output.model,
        sm.output.card,
        sm.output.selection,
        sm.output.search,
        n_jobs=sm.threads,
    )


main(snakemake)  # noqa: F821
