"""Glue for rule evaluate_segmentation: agreement tables for one sequence."""

from pathlib import Path

from radstudy.logs import setup_logging
from radstudy.stages import evaluate_segmentation


def main(sm) -> None:
    setup_logging(sm.log[0])
    evaluate_segmentation(
        sm.params.masks,
        sm.params.memberships,
        sm.params.readers,
        str(Path(sm.output.pairs).parent),
        sm.params.seed,
        images=sm.params.images,
    )


main(snakemake)  # noqa: F821
