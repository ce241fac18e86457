"""Glue for rule fit_deep: train the ResNet on the training batches' crops of one sequence."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

import json

import pandas as pd

from radstudy.deep import fit_deep_pieces
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    sheet = pd.concat(pd.read_csv(s, sep="\t", dtype={"case_id": str}) for s in sm.input.sheets)
    labels = sheet.set_index("case_id")[sm.params.endpoint]
    info = fit_deep_pieces(
        list(sm.input.crops), labels, sm.output.checkpoint, sm.params.cfg, sm.params.seed
    )
    with open(sm.output.history, "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)


main(snakemake)  # noqa: F821
