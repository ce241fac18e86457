"""Glue for rule extract_radiomics: pyradiomics features of one batch of cases."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.features import extract_batch
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    extract_batch(
        sm.wildcards.seq,
        sm.params.cases,
        sm.params.cfg,
        sm.output.features,
        sm.output.excluded,
        workers=sm.threads,
    )


main(snakemake)  # noqa: F821
