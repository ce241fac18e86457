"""Glue for rule measure_segmentation: per-case agreement pieces of one batch."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.agreement import measure_segmentation
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    measure_segmentation(
        sm.params.masks, sm.params.memberships, sm.params.images, sm.params.readers, sm.output.piece
    )


main(snakemake)  # noqa: F821
