"""Glue for rule harmonize_center: map one center onto the frozen ComBat reference."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import harmonize_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    harmonize_center(sm.input.model, sm.input.table, sm.output.table)


main(snakemake)  # noqa: F821
