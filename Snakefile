"""radstudy: multi-center radiomics study from images + cohort sheet to report."""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/preprocess.smk"
include: "rules/segment.smk"
include: "rules/features.smk"
include: "rules/harmonize.smk"
include: "rules/select.smk"
include: "rules/model.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        rules.render_report.output.html,
