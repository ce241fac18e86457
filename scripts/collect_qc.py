"""Glue for rule collect_qc: one batch's preprocessing records for the report."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.qcrecords import qc_piece


def main(sm) -> None:
    setup_logging(sm.log[0])
    qc_piece(sm.params.rows, sm.output.records)


main(snakemake)  # noqa: F821
