"""Glue for rule segment_slic_fcm: SLIC superpixels + fuzzy c-means tumor mask."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import run_case_step
from radstudy.logs import setup_logging
from radstudy.segment import segment_case


def main(sm) -> None:
    setup_logging(sm.log[0])
    organ = sm.input.organ[0] if sm.input.organ else None
    run_case_step(
        sm.wildcards.case,
        inputs=[sm.input.image, organ],
        outputs=[sm.output.mask, sm.output.membership],
        step=lambda: segment_case(
            sm.wildcards.case,
            sm.input.image,
            organ,
            sm.output.mask,
            sm.output.membership,
            sm.params.cfg,
            sm.params.seed,
        ),
    )


main(snakemake)  # noqa: F821
