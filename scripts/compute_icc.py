"""Glue for rule compute_icc: inter/intra-reader ICC on training cases."""

from radstudy.logs import setup_logging
from radstudy.stages import compute_icc


def main(sm) -> None:
    setup_logging(sm.log[0])
    compute_icc(
        list(sm.input.tables),
        list(sm.input.sheets),
        sm.params.cfg,
        sm.params.readers,
        sm.params.repeats,
        sm.output.icc,
        sm.output.robust,
    )


main(snakemake)  # noqa: F821
