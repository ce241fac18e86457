"""Glue for rule export_mask: a pseudo-reader's mask as a DICOM SEG (export/dicom_seg)
or an RTSTRUCT (export/rtstruct) on its source series."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

import SimpleITK as sitk

from radstudy.casestep import run_case_step
from radstudy.dicomio import export_rtstruct, export_seg
from radstudy.logs import setup_logging

WRITERS = {"dicom_seg": export_seg, "rtstruct": export_rtstruct}


def main(sm) -> None:
    setup_logging(sm.log[0])
    case, reader = sm.wildcards.case, sm.wildcards.reader
    write = WRITERS[sm.wildcards.fmt]
    run_case_step(
        case,
        inputs=[sm.params.mask],
        outputs=[sm.output.export],
        step=lambda: write(
            sitk.ReadImage(sm.params.mask),
            sm.input.image,
            case,
            sm.output.export,
            sm.params.dicom,
            label=reader,
            algorithm=f"radstudy {sm.params.method}",
        ),
    )


main(snakemake)  # noqa: F821
