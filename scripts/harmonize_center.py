"""Glue for rule harmonize_center: map one center onto the frozen ComBat reference."""

from radstudy.logs import setup_logging
from radstudy.stages import harmonize_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    harmonize_center(sm.input.model, sm.input.table, sm.output.table)


main(snakemake)  # noqa: F821
