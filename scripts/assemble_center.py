"""Glue for rule assemble_center: one center's wide feature table + its exclusions."""

from radstudy.logs import setup_logging
from radstudy.tables import assemble_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    assemble_center(
        sm.input.sheet, sm.params.files, sm.params.clinical, sm.output.table, sm.output.excluded
    )


main(snakemake)  # noqa: F821
