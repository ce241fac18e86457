"""Glue for rule segment_nnunet: nnU-Net v2 prediction with a trained model folder."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import run_case_step
from radstudy.logs import setup_logging
from radstudy.segment import nnunet_case


def main(sm) -> None:
    setup_logging(sm.log[0])
    run_case_step(
        sm.wildcards.case,
        inputs=[sm.input.image],
        outputs=[sm.output.mask, sm.output.membership],
        step=lambda: nnunet_case(
            sm.input.image,
            sm.params.cfg["nnunet_model"],
            sm.output.mask,
            sm.output.membership,
            sm.params.cfg,
        ),
    )


main(snakemake)  # noqa: F821
