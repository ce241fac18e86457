"""Glue for rule evaluate_segmentation: agreement tables for one sequence."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from pathlib import Path

from radstudy.agreement import merge_segmentation
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    out_dir = str(Path(sm.output.pairs).parent)
    merge_segmentation(list(sm.input.pieces), sm.params.readers, out_dir, sm.params.seed)


main(snakemake)  # noqa: F821
