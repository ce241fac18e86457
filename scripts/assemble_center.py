"""Glue for rule assemble_center: one center's wide feature table + its exclusions."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.tables import assemble_center


def main(sm) -> None:
    setup_logging(sm.log[0])
    deep = list(zip(sm.input.get("deep", []), sm.input.get("deep_excluded", []), strict=True))
    assemble_center(
        sm.input.sheet,
        list(zip(sm.input.features, sm.input.excluded, strict=True)),
        sm.params.reader,
        sm.params.clinical,
        sm.output.table,
        sm.output.excluded,
        center_tables=deep,
    )


main(snakemake)  # noqa: F821
