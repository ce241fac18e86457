"""Glue for rule evaluate_model: metrics with CIs per cohort, curve data for figures."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.stages import evaluate_model


def main(sm) -> None:
    setup_logging(sm.log[0])
    evaluate_model(
        sm.input.cv,
        sm.input.card,
        list(sm.input.predictions),
        sm.wildcards.endpoint,
        sm.params.cfg,
        sm.output.metrics,
        sm.output.curves,
    )


main(snakemake)  # noqa: F821
