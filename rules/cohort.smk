"""The validated cohort sheet, written by rules (never at parse time).

Inputs:  none: the validated sheet (rules/common.smk) is these rules' params, so a job
         reruns exactly when its rows change
Outputs: results/cohort/cases.tsv            included cases (paths absolute; rule
                                             register_cohort)
         results/cohort/sheet_excluded.tsv   cases excluded by the sheet's criteria
                                             (rule register_exclusions)
         results/cohort/centers/{center}.tsv one center's rows: adding a center never
                                             rewrites the old centers' files
"""


localrules:
    register_cohort,
    register_exclusions,
    register_center,


rule register_cohort:
    output:
        cases="results/cohort/cases.tsv",
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
        rows=rs_cohort.to_tsv(CASES),
    script:
        "../scripts/register_cohort.py"


# its own rule: a new center's cases change cases.tsv, not the sheet's exclusions
rule register_exclusions:
    output:
        excluded="results/cohort/sheet_excluded.tsv",
    log:
        "logs/register_exclusions.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("register_exclusions"),
        rows=rs_cohort.to_tsv(SHEET_EXCLUDED),
    script:
        "../scripts/register_exclusions.py"


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
