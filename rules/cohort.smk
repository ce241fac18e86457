"""The validated cohort sheet, written by rules (never at parse time).

Inputs:  none: the validated sheet (rules/common.smk) is these rules' params, so a job
         reruns exactly when its rows change
Outputs: results/cohort/cases.tsv            included cases (paths absolute)
         results/cohort/sheet_excluded.tsv   cases excluded by the sheet's criteria
         results/cohort/centers/{center}.tsv one center's rows: adding a center never
                                             rewrites the old centers' files
"""


localrules:
    register_cohort,
    register_center,


rule register_cohort:
    output:
        cases="results/cohort/cases.tsv",
        excluded="results/cohort/sheet_excluded.tsv",
    log:
        "logs/register_cohort.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("register_cohort"),
        cases=rs_cohort.to_tsv(CASES),
        excluded=rs_cohort.to_tsv(SHEET_EXCLUDED),
    script:
        "../scripts/register_cohort.py"


rule register_center:
    output:
        sheet="results/cohort/centers/{center}.tsv",
    log:
        "logs/register_center/{center}.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("register_center"),
        rows=center_sheet_text,
    script:
        "../scripts/register_center.py"
