"""Glue for rule train_nnunet: nnU-Net training of the configured folds (one job).

nnU-Net starts worker processes with "spawn": each imports this file again as
``__mp_main__``, where there is no ``snakemake`` object; so nothing runs at import.
"""

import json
import sys
from pathlib import Path


def main(sm) -> None:
    # this workflow's own radstudy first (Snakemake appends its search paths; an
    # installed radstudy, e.g. from another clone, would win otherwise)
    sys.path.insert(0, sm.scriptdir)
    from radstudy.logs import setup_logging
    from radstudy.nnunet import train

    setup_logging(sm.log[0])
    root = Path(sm.input.raw).parent  # results/nnunet/{seq}: raw/, preprocessed/, model/
    card = train(root, sm.wildcards.seq, **sm.params.cfg, threads=sm.threads, seed=sm.params.seed)
    Path(sm.output.card).write_text(json.dumps(card, indent=1))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
