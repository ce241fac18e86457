"""Glue for rule assemble_center: one center's wide feature table + its exclusions."""

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
