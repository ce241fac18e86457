"""Glue for rule crop_deep: ROI crops of one batch's training cases, one file per
sequence."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.deep import crop_piece
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    # rows are keyed by sequence in the outputs' order (SEQS)
    for rows, out in zip(sm.params.rows.values(), sm.output.crops, strict=True):
        crop_piece(rows, out, sm.params.cfg)


main(snakemake)  # noqa: F821
