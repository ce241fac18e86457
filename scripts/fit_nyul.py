"""Glue for rule fit_nyul: Nyul landmarks from the training batches' pieces only."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.preprocess import merge_nyul


def main(sm) -> None:
    setup_logging(sm.log[0])
    merge_nyul(list(sm.input.pieces), sm.params.region, sm.output.landmarks, sm.params.cfg)


main(snakemake)  # noqa: F821
