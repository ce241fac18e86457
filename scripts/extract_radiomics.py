"""Glue for rule extract_radiomics: pyradiomics features of one case x seq, per reader."""

from radstudy.casestep import run_case_step
from radstudy.features import extract_case
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    w = sm.wildcards
    for reader, mask, out in zip(
        sm.params.readers, sm.input.masks, sm.output.features, strict=True
    ):
        run_case_step(
            w.case,
            inputs=[sm.input.image, mask],
            outputs=[out],
            step=lambda r=reader, m=mask, o=out: extract_case(
                w.case, w.seq, r, sm.input.image, m, o, sm.params.cfg
            ),
        )


main(snakemake)  # noqa: F821
