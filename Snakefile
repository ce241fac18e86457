"""radstudy: multi-center radiomics study from images + cohort sheet to report."""

from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The demo study (config.yaml beside this file) runs only when no config is given:
# `--configfile my_study.yaml` means exactly that file plus the schema's defaults
# (config.schema.yaml), never the demo's keys. As a module, the caller's config.
if not workflow.overwrite_configfiles:

    configfile: Path(workflow.current_basedir.get_path_or_uri(secret_free=True)) / "config.yaml"


include: "rules/common.smk"
include: "rules/cohort.smk"
include: "rules/preprocess.smk"
include: "rules/segment.smk"
include: "rules/nnunet.smk"
include: "rules/features.smk"
include: "rules/harmonize.smk"
include: "rules/select.smk"
include: "rules/model.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/export.smk"


rule all:
    input:
        rules.render_report.output.html,
        export_outputs(),


# a target, not a step: every case's preprocessing and QC, no cohort-level job; with
# `--batch process_cases=1/10 process_cases` Snakemake plans a tenth of the extraction
# batches at a time (README "Very large cohorts")
rule process_cases:
    input:
        qc_pieces(),
