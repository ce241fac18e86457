"""Glue for rule fit_combat: ComBat estimates from the training rows only."""

from radstudy.logs import setup_logging
from radstudy.stages import fit_combat


def main(sm) -> None:
    setup_logging(sm.log[0])
    fit_combat(list(sm.input.tables), sm.params.cfg, sm.output.model, sm.output.summary)


main(snakemake)  # noqa: F821
