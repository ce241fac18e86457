"""Glue for rule predict_nnunet: one extraction batch's cases through the nnU-Net model
(trained in the study or ready), loaded once; a case it cannot predict is excluded."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

from radstudy.logs import setup_logging
from radstudy.nnunet import predict_batch


def main(sm) -> None:
    setup_logging(sm.log[0])
    predict_batch(
        sm.params.images,
        sm.input.model,
        sm.params.folds,
        sm.output.predictions,
        device=sm.params.device,
        threads=sm.threads,
    )


main(snakemake)  # noqa: F821
