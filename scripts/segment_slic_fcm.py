"""Glue for rule segment_slic_fcm: SLIC superpixels + fuzzy c-means tumor masks of one
batch of cases x one sequence (each case in its own process)."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import CaseJob, run_case_batch
from radstudy.logs import setup_logging
from radstudy.segment import segment_case, warm_up


def main(sm) -> None:
    setup_logging(sm.log[0])
    jobs = {
        case: CaseJob(
            inputs=[c["image"], c["organ"]],
            outputs=[c["out_mask"], c["out_membership"]],
            step=lambda case=case, c=c: segment_case(
                case,
                c["image"],
                c["organ"],
                c["out_mask"],
                c["out_membership"],
                sm.params.cfg,
                sm.params.seed,
            ),
        )
        for case, c in sm.params.cases.items()
    }
    warm_up()
    run_case_batch(jobs, workers=sm.threads)


main(snakemake)  # noqa: F821
