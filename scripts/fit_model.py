"""Glue for rule fit_model: fit one model's whole pipeline on the training rows."""

from radstudy.logs import setup_logging
from radstudy.stages import fit_model


def main(sm) -> None:
    setup_logging(sm.log[0])
    fit_model(
        list(sm.input.tables),
        list(sm.input.sheets),
        sm.input.robust,
        sm.wildcards.endpoint,
        sm.wildcards.model,
        sm.params.cfg,
        sm.output.model,
        sm.output.card,
        sm.output.selection,
    )


main(snakemake)  # noqa: F821
