"""Glue for rule register_cohort: the validated sheet's included cases as TSV."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.cohort import write_if_changed
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    write_if_changed(sm.output.cases, sm.params.rows)


main(snakemake)  # noqa: F821
