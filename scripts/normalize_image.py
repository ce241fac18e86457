"""Glue for rule normalize_image: z-score in ROI or Nyul landmarks, one case x seq."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import run_case_step
from radstudy.logs import setup_logging
from radstudy.preprocess import normalize_case


def main(sm) -> None:
    setup_logging(sm.log[0])
    nyul, region = sm.input.get("nyul"), sm.input.get("region")
    run_case_step(
        sm.wildcards.case,
        inputs=[sm.input.image, sm.input.mask, region],
        outputs=[sm.output.image, sm.output.qc],
        step=lambda: normalize_case(
            sm.wildcards.case,
            sm.input.image,
            sm.input.mask,
            sm.output.image,
            sm.params.cfg,
            nyul_json=nyul,
            region_mask_path=region,
            out_qc_json=sm.output.qc,
        ),
    )


main(snakemake)  # noqa: F821
