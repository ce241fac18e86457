"""Glue for rule import_center: one center's wide table from a given feature table."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.tables import import_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    import_center(
        sm.input.table,
        sm.input.sheet,
        sm.params.cohort,
        sm.params.non_features,
        sm.output.table,
        sm.output.excluded,
        sm.output.columns,
    )


main(snakemake)  # noqa: F821
