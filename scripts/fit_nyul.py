"""Glue for rule fit_nyul: Nyul landmarks from the training cases' images only."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.preprocess import fit_nyul


def main(sm) -> None:
    setup_logging(sm.log[0])
    masks = list(sm.input.get("masks", [None] * len(sm.input.images)))
    fit_nyul(list(sm.input.images), masks, sm.output.landmarks, sm.params.cfg)


main(snakemake)  # noqa: F821
