"""Models per endpoint: fit on training rows, cross-validate, predict each center.

Inputs:  results/features/raw/{center}.parquet (training centers for fitting),
         results/cohort/centers/{center}.tsv (outcomes), results/selection/robust.txt
Outputs: results/models/{endpoint}/{model}/model.joblib  whole pipeline (ComBat ->
             selection -> scaler -> [SMOTE] -> classifier | Cox, or ComBat -> search:
             radstudy.search, nested in the CV), fitted on training rows
         results/models/{endpoint}/{model}/card.json     inputs, features, threshold, versions
         results/models/{endpoint}/{model}/selection.tsv selected features with weights
         results/models/{endpoint}/{model}/search.parquet search history of the final
             fit (trial, value, params, state; empty for a model without a search)
         results/evaluation/{endpoint}/{model}/cv.tsv    out-of-fold predictions (refit per fold;
             a searched model's null check refits the configurations its model.joblib chose)
         results/evaluation/{endpoint}/{model}/predictions/{center}.tsv
"""


rule fit_model:
    input:
        tables=train_tables("raw"),
        sheets=train_sheets(),
        robust=rules.compute_icc.output.robust,
    output:
        model="results/models/{endpoint}/{model}/model.joblib",
        card="results/models/{endpoint}/{model}/card.json",
        selection="results/models/{endpoint}/{model}/selection.tsv",
        search="results/models/{endpoint}/{model}/search.parquet",
    log:
        "logs/fit_model/{endpoint}_{model}.log",
    conda:
        "../envs/stats.yaml"
    threads: model_threads
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_version("fit_model"),
        cfg=fit_model_cfg,
    script:
        "../scripts/fit_model.py"


rule cross_validate_model:
    input:
        unpack(null_check_model),
        tables=train_tables("raw"),
        sheets=train_sheets(),
        robust=rules.compute_icc.output.robust,
    output:
        predictions="results/evaluation/{endpoint}/{model}/cv.tsv",
    log:
        "logs/cross_validate_model/{endpoint}_{model}.log",
    benchmark:
        "benchmarks/cross_validate_model/{endpoint}_{model}.tsv"
    conda:
        "../envs/stats.yaml"
    threads: cv_threads  # outer folds at once
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        code=code_version("cross_validate_model"),
        cfg=cross_validate_cfg,
    script:
        "../scripts/cross_validate_model.py"


rule predict_center:
    input:
        model=rules.fit_model.output.model,
        card=rules.fit_model.output.card,
        table="results/features/raw/{center}.parquet",
        sheet="results/cohort/centers/{center}.tsv",
    output:
        predictions="results/evaluation/{endpoint}/{model}/predictions/{center}.tsv",
    log:
        "logs/predict_center/{endpoint}_{model}_{center}.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("predict_center"),
        cfg=predict_cfg,
    script:
        "../scripts/predict_center.py"
