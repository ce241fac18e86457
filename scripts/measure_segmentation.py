"""Glue for rule measure_segmentation: per-case agreement pieces of one batch, one per
sequence."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.agreement import measure_segmentation
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    # rows are keyed by sequence in the outputs' order (SEQS)
    for rows, out in zip(sm.params.rows.values(), sm.output.pieces, strict=True):
        measure_segmentation(
            rows["masks"], rows["memberships"], rows["images"], sm.params.readers, out
        )


main(snakemake)  # noqa: F821
