"""Glue for rule assemble_readers: long table (case x reader) of one center."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.tables import assemble_readers


def main(sm) -> None:
    setup_logging(sm.log[0])
    batches = list(zip(sm.input.features, sm.input.excluded, strict=True))
    assemble_readers(batches, sm.params.cases, sm.params.readers, sm.output.table)


main(snakemake)  # noqa: F821
