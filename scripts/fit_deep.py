"""Glue for rule fit_deep: train the ResNet on the training cases of one sequence."""

import sys

# this workflow's own radstudy first (Snakemake appends its search paths; an
# installed radstudy, e.g. from another clone, would win otherwise)
sys.path.insert(0, snakemake.scriptdir)  # noqa: F821

import json

import pandas as pd

from radstudy.casestep import marker_reason
from radstudy.deep import fit_deep_model
from radstudy.logs import setup_logging


def main(sm) -> None:
    setup_logging(sm.log[0])
    sheet = pd.concat(pd.read_csv(s, sep="\t", dtype={"case_id": str}) for s in sm.input.sheets)
    label = sheet.set_index("case_id")[sm.params.endpoint]
    cases = [
        (c, img, mask, int(label[c]))
        for c, img, mask in zip(sm.params.cases, sm.input.images, sm.input.masks, strict=True)
        if marker_reason(img) is None and marker_reason(mask) is None and pd.notna(label[c])
    ]
    info = fit_deep_model(cases, sm.output.checkpoint, sm.params.cfg, sm.params.seed)
    with open(sm.output.history, "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)


main(snakemake)  # noqa: F821
