"""Glue for rule assemble_readers: long table (case x reader) of one center."""

from radstudy.logs import setup_logging
from radstudy.tables import assemble_readers


def main(sm) -> None:
    setup_logging(sm.log[0])
    files = {(case, reader): paths for case, reader, paths in sm.params.files}
    assemble_readers(files, sm.output.table)


main(snakemake)  # noqa: F821
