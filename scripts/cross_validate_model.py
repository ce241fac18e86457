"""Glue for rule cross_validate_model: out-of-fold predictions, chain refit per fold."""

from radstudy.logs import setup_logging
from radstudy.stages import cross_validate_model


def main(sm) -> None:
    setup_logging(sm.log[0])
    cross_validate_model(
        list(sm.input.tables),
        list(sm.input.sheets),
        sm.input.robust,
        sm.wildcards.endpoint,
        sm.wildcards.model,
        sm.params.cfg,
        sm.output.predictions,
    )


main(snakemake)  # noqa: F821
