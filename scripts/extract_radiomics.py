"""Glue for rule extract_radiomics: pyradiomics features of one case x seq, per reader."""

from radstudy.features import extract_readers
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    readers = sm.params.readers
    extract_readers(
        sm.wildcards.case,
        sm.wildcards.seq,
        sm.input.image,
        dict(zip(readers, sm.input.masks, strict=True)),
        dict(zip(readers, sm.output.features, strict=True)),
        sm.params.cfg,
        needed=sm.params.needed,
    )


main(snakemake)  # noqa: F821
