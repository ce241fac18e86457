"""Glue for rule fit_nyul: Nyul landmarks from the training cases' images only."""

from radstudy.logs import setup_logging
from radstudy.preprocess import fit_nyul


def main(sm) -> None:
    setup_logging(sm.log[0])
    masks = list(sm.input.get("masks", [None] * len(sm.input.images)))
    fit_nyul(list(sm.input.images), masks, sm.output.landmarks, sm.params.cfg)


main(snakemake)  # noqa: F821
