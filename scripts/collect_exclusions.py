"""Glue for rule collect_exclusions: sheet-level + processing exclusions in one table."""

from radstudy.logs import setup_logging
from radstudy.tables import collect_exclusions


def main(sm) -> None:
    setup_logging(sm.log[0])
    collect_exclusions([sm.input.sheet, *sm.input.centers], sm.output.excluded)


main(snakemake)  # noqa: F821
