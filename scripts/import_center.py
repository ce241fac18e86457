"""Glue for rule import_center: one center's wide table from a given feature table."""

from radstudy.logs import setup_logging
from radstudy.tables import import_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    import_center(
        sm.input.table,
        sm.input.sheet,
        sm.params.clinical,
        sm.params.non_features,
        sm.output.table,
        sm.output.excluded,
    )


main(snakemake)  # noqa: F821
