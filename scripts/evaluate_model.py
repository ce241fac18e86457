"""Glue for rule evaluate_model: metrics with CIs per cohort, curve data for figures."""

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
