"""Glue for rule extract_radiomics: pyradiomics features of one case x seq x reader."""

from radstudy.casestep import run_case_step
from radstudy.features import extract_case
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    w = sm.wildcards
    run_case_step(
        w.case,
        inputs=[sm.input.image, sm.input.mask],
        outputs=[sm.output.features],
        step=lambda: extract_case(
            w.case,
            w.seq,
            w.reader,
            sm.input.image,
            sm.input.mask,
            sm.output.features,
            sm.params.cfg,
        ),
    )


main(snakemake)  # noqa: F821
