"""Glue for rule fit_combat: ComBat estimates from the training rows only."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import fit_combat


def main(sm) -> None:
    setup_logging(sm.log[0])
    fit_combat(
        list(sm.input.tables),
        sm.params.cfg,
        sm.output.model,
        sm.output.summary,
        sheets=list(sm.input.sheets),
        endpoints=dict(sm.params.endpoints),
        seed=sm.params.seed,
        icfg=sm.params.imputation,
    )


main(snakemake)  # noqa: F821
