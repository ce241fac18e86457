"""Glue for rule plan_nnunet: nnU-Net's fingerprint, planning and preprocessing.

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
    from radstudy.nnunet import plan_and_preprocess

    setup_logging(sm.log[0])
    root = Path(sm.input.raw).parent  # results/nnunet/{seq}: raw/, preprocessed/, model/
    out = plan_and_preprocess(root, sm.wildcards.seq, sm.params.configuration, sm.threads)
    Path(sm.output.plans).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
