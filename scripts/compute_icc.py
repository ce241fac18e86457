"""Glue for rule compute_icc: inter/intra-reader ICC on training cases."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import compute_icc


def main(sm) -> None:
    setup_logging(sm.log[0])
    compute_icc(
        list(sm.input.tables),
        list(sm.input.sheets),
        sm.params.cfg,
        sm.params.readers,
        sm.params.repeats,
        sm.output.icc,
        sm.output.robust,
    )


main(snakemake)  # noqa: F821
