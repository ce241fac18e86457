"""Glue for rule predict_center: the frozen model's predictions for one center."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import predict_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    predict_center(
        sm.input.model,
        sm.input.card,
        sm.input.table,
        sm.input.sheet,
        sm.wildcards.endpoint,
        sm.params.cfg,
        sm.output.predictions,
    )


main(snakemake)  # noqa: F821
