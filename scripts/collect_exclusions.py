"""Glue for rule collect_exclusions: sheet-level + processing exclusions in one table."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.tables import collect_exclusions


def main(sm) -> None:
    setup_logging(sm.log[0])
    collect_exclusions([sm.input.sheet, *sm.input.centers], sm.output.excluded)


main(snakemake)  # noqa: F821
