"""Glue for rule segment_nnunet: nnU-Net v2 prediction with a trained model folder."""

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
