"""Glue for rule extract_deep: ResNet features of one case x seq from the tumor ROI."""

from radstudy.casestep import run_case_step
from radstudy.deep import extract_deep_case
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    w = sm.wildcards
    run_case_step(
        w.case,
        inputs=[sm.input.image, sm.input.mask],
        outputs=[sm.output.features],
        step=lambda: extract_deep_case(
            w.case,
            w.seq,
            sm.input.image,
            sm.input.mask,
            sm.input.get("checkpoint"),  # trained in the workflow; else cfg weights
            sm.output.features,
            sm.params.cfg,
            sm.params.seed,
        ),
    )


main(snakemake)  # noqa: F821
