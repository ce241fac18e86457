"""Glue for rule render_report: the self-contained HTML report."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.report import render_report


def main(sm) -> None:
    setup_logging(sm.log[0])
    render_report(
        dict(sm.input.items()),
        sm.params.cfg,
        sm.output.html,
        sm.params.options,
        sm.output.figures,
        sm.params.radiomics,
    )


main(snakemake)  # noqa: F821
