"""Glue for rule prepare_image: import + QC + resample + N4/HU window of one case x seq."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import run_case_step
from radstudy.logs import setup_logging
from radstudy.preprocess import prepare_case


def main(sm) -> None:
    setup_logging(sm.log[0])
    case, seq = sm.wildcards.case, sm.wildcards.seq
    out_masks = dict(zip(sm.params.readers, sm.output.masks, strict=True))
    masks = {r: sm.params.masks.get(r) for r in sm.params.readers}
    run_case_step(
        case,
        inputs=[sm.input.image, *sm.input.masks],
        outputs=[sm.output.image, sm.output.qc, *sm.output.masks],
        step=lambda: prepare_case(
            case,
            seq,
            sm.input.image,
            masks,
            sm.params.ref_reader,
            sm.output.image,
            out_masks,
            sm.output.qc,
            sm.params.cfg,
        ),
    )


main(snakemake)  # noqa: F821
