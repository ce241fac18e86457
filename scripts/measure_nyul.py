"""Glue for rule measure_nyul: mapped Nyul landmarks of one batch's training cases."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.preprocess import nyul_piece


def main(sm) -> None:
    setup_logging(sm.log[0])
    files = sm.params.files
    nyul_piece(
        sm.params.cases, files["images"], files.get("masks"), sm.output.landmarks, sm.params.cfg
    )


main(snakemake)  # noqa: F821
