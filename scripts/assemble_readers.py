"""Glue for rule assemble_readers: long table (case x reader) of one center."""

from radstudy.logs import setup_logging
from radstudy.tables import assemble_readers


def main(sm) -> None:
    setup_logging(sm.log[0])
    batches = list(zip(sm.input.features, sm.input.excluded, strict=True))
    assemble_readers(batches, sm.params.cases, sm.params.readers, sm.output.table)


main(snakemake)  # noqa: F821
