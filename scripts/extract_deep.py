"""Glue for rule extract_deep: ResNet features of one center x seq (one network load)."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.deep import extract_deep_center
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    extract_deep_center(
        list(
            zip(sm.params.cases, sm.params.files["images"], sm.params.files["masks"], strict=True)
        ),
        sm.wildcards.seq,
        sm.input.get("checkpoint"),  # trained in the workflow; else deep.weights
        sm.output.features,
        sm.output.excluded,
        sm.params.cfg,
        sm.params.seed,
    )


main(snakemake)  # noqa: F821
