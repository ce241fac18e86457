"""Glue for rule predict_center: the frozen model's predictions for one center."""

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
