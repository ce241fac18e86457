"""Glue for rule segment_nnunet: one case through the nnU-Net model (trained in the
study or ready), the foreground probability as its membership map."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import run_case_step
from radstudy.logs import setup_logging
from radstudy.nnunet import segment_case


def main(sm) -> None:
    setup_logging(sm.log[0])
    run_case_step(
        sm.wildcards.case,
        inputs=[sm.input.image],
        outputs=[sm.output.mask, sm.output.membership],
        step=lambda: segment_case(
            sm.input.image,
            sm.input.model,
            sm.output.mask,
            sm.output.membership,
            sm.params.folds,
            sm.params.device,
        ),
    )


main(snakemake)  # noqa: F821
