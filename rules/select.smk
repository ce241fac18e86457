"""Reproducibility across readers (training cases only).

Inputs:  results/features/readers/{center}.parquet of the training centers
Outputs: results/selection/icc.tsv   inter- and intra-observer ICC per feature, category
         results/selection/robust.txt  features whose inter-reader ICC passes the threshold
Selection proper (univariate, correlation, LASSO, mRMR) runs inside each model's
pipeline (rule fit_model), so CV refits it per fold.
"""


rule compute_icc:
    input:
        tables=expand("results/features/readers/{center}.parquet", center=TRAIN_CENTERS),
        sheets=train_sheets(),
    output:
        icc="results/selection/icc.tsv",
        robust="results/selection/robust.txt",
    log:
        "logs/compute_icc.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_version("compute_icc"),
        cfg=config["reproducibility"],
        readers=READERS,
        repeats=config["cohort"]["repeats"],
    script:
        "../scripts/compute_icc.py"
