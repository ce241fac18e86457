"""Glue for rule export_nnunet_dataset: the training cases as an nnU-Net v2 raw dataset."""

import json
import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.nnunet import export_dataset


def main(sm) -> None:
    setup_logging(sm.log[0])
    cases = dict(
        zip(
            sm.params.cases,
            zip(sm.params.files["images"], sm.params.files["masks"], strict=True),
            strict=True,
        )
    )
    summary = export_dataset(cases, sm.output.raw, sm.wildcards.seq, sm.params.modality)
    with open(sm.output.summary, "w") as fh:
        json.dump(summary, fh, indent=1)


main(snakemake)  # noqa: F821
