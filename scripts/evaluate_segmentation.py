"""Glue for rule evaluate_segmentation: agreement tables for one sequence."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from pathlib import Path

from radstudy.logs import setup_logging
from radstudy.stages import evaluate_segmentation


def main(sm) -> None:
    setup_logging(sm.log[0])
    evaluate_segmentation(
        sm.params.masks,
        sm.params.memberships,
        sm.params.readers,
        str(Path(sm.output.pairs).parent),
        sm.params.seed,
        images=sm.params.images,
    )


main(snakemake)  # noqa: F821
