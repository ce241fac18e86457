"""Glue for rule normalize_image: z-score in ROI or Nyul landmarks, one batch of cases x
one sequence (each case in its own process: radstudy.casestep.run_case_batch), then the
batch's QC records for the report (radstudy.qcrecords.qc_piece)."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.casestep import CaseJob, run_case_batch
from radstudy.logs import setup_logging
from radstudy.preprocess import normalize_case, warm_up
from radstudy.qcrecords import qc_piece


def main(sm) -> None:
    setup_logging(sm.log[0])
    nyul = sm.input.get("nyul")
    jobs = {
        case: CaseJob(
            inputs=[c["image"], c["mask"], c["region"]],
            outputs=[c["out_image"], c["out_qc"]],
            step=lambda case=case, c=c: normalize_case(
                case,
                c["image"],
                c["mask"],
                c["out_image"],
                sm.params.cfg,
                nyul_json=nyul,
                region_mask_path=c["region"],
                out_qc_json=c["out_qc"],
            ),
        )
        for case, c in sm.params.cases.items()
    }
    warm_up()
    run_case_batch(jobs, workers=sm.threads)
    # the report's QC records of this batch x sequence (one small file, so the report
    # never lists every case's files)
    qc_piece(sm.params.rows, sm.output.records)


main(snakemake)  # noqa: F821
