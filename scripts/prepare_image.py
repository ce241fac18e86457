"""Glue for rule prepare_image: import + QC + resample + N4/HU window of one batch of
cases x one sequence (each case in its own process: radstudy.casestep.run_case_batch)."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import CaseJob, run_case_batch
from radstudy.logs import setup_logging
from radstudy.preprocess import prepare_case, warm_up


def main(sm) -> None:
    setup_logging(sm.log[0])
    seq, jobs = sm.wildcards.seq, {}
    for case, c in sm.params.cases.items():
        cfg = {**sm.params.cfg, "dicom": c["dicom"]} if c["dicom"] else sm.params.cfg
        masks = {r: c["masks"].get(r) for r in sm.params.readers}
        jobs[case] = CaseJob(
            inputs=[c["image"], *(p for p in masks.values() if p)],
            outputs=[c["out_image"], c["out_qc"], *c["out_masks"].values()],
            step=lambda case=case, c=c, cfg=cfg, masks=masks: prepare_case(
                case,
                seq,
                c["image"],
                masks,
                sm.params.ref_reader,
                c["out_image"],
                c["out_masks"],
                c["out_qc"],
                cfg,
            ),
        )
    warm_up(dicom=any(c["dicom"] for c in sm.params.cases.values()))
    run_case_batch(jobs, workers=sm.threads)


main(snakemake)  # noqa: F821
