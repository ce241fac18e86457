"""Per-center feature tables and ComBat harmonisation.

Inputs:  feature batches of rule extract_radiomics (or cohort.features_table), results/cohort/centers/{center}.tsv
Outputs: results/features/raw/{center}.parquet         wide table (model reader + clinical)
         results/features/columns/{center}.tsv         feature table only: each column's role
         results/features/readers/{center}.parquet     long table, every reader (for ICC)
         results/features/excluded/{center}.tsv        cases excluded while processing
         results/features/combat.joblib                gap filling + ComBat, fitted on training rows only
         results/features/harmonized/{center}.parquet  that center mapped onto the reference
         results/cohort/excluded.tsv                   every exclusion with its reason
"""


localrules:
    collect_exclusions,


if FEATURE_TABLE:

    # feature-table entry point: the center's rows of cohort.features_table
    rule import_center:
        input:
            table=FEATURE_TABLE,
            sheet="results/cohort/centers/{center}.tsv",
        output:
            table="results/features/raw/{center}.parquet",
            excluded="results/features/excluded/{center}.tsv",
            columns="results/features/columns/{center}.tsv",
        log:
            "logs/import_center/{center}.log",
        conda:
            "../envs/stats.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=10,
        params:
            code=code_version("import_center"),
            cohort=IMPORT_COHORT,
            non_features=NON_FEATURE_COLUMNS,
        script:
            "../scripts/import_center.py"

else:

    rule assemble_center:
        input:
            unpack(center_assembly_inputs),
        output:
            table="results/features/raw/{center}.parquet",
            excluded="results/features/excluded/{center}.tsv",
        log:
            "logs/assemble_center/{center}.log",
        conda:
            "../envs/stats.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=10,
        params:
            code=code_version("assemble_center"),
            reader=MODEL_READER,
            clinical=config["cohort"]["clinical"],
        script:
            "../scripts/assemble_center.py"


rule assemble_readers:
    input:
        unpack(center_batch_inputs),
    output:
        table="results/features/readers/{center}.parquet",
    log:
        "logs/assemble_readers/{center}.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        code=code_version("assemble_readers"),
        cases=center_train_cases,
        readers=READERS,
    script:
        "../scripts/assemble_readers.py"


rule collect_exclusions:
    input:
        sheet="results/cohort/sheet_excluded.tsv",
        centers=expand("results/features/excluded/{center}.tsv", center=CENTERS),
    output:
        excluded="results/cohort/excluded.tsv",
    log:
        "logs/collect_exclusions.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("collect_exclusions"),
    script:
        "../scripts/collect_exclusions.py"


rule fit_combat:
    input:
        tables=train_tables("raw"),
        sheets=train_sheets(),
    output:
        model="results/features/combat.joblib",
        summary="results/features/combat.json",
    log:
        "logs/fit_combat.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_version("fit_combat"),
        cfg=config["harmonization"],
        imputation=config["imputation"],
        seed=config["seed"],
        # binary endpoints: is their prevalence the same in every training center?
        endpoints={
            k: v for k, v in config["endpoints"].items() if v["type"] == "binary"
        },
    script:
        "../scripts/fit_combat.py"


rule harmonize_center:
    input:
        model=rules.fit_combat.output.model,
        table="results/features/raw/{center}.parquet",
    output:
        table="results/features/harmonized/{center}.parquet",
    log:
        "logs/harmonize_center/{center}.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        code=code_version("harmonize_center"),
    script:
        "../scripts/harmonize_center.py"
