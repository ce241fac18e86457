"""Glue for rule render_report: the self-contained HTML report."""

from radstudy.logs import setup_logging
from radstudy.report import render_report


def main(sm) -> None:
    setup_logging(sm.log[0])
    render_report(dict(sm.input.items()), sm.params.cfg, sm.output.html)


main(snakemake)  # noqa: F821
