"""Evaluation per endpoint x model: CV, held-out test, each external center.

Inputs:  results/evaluation/{endpoint}/{model}/cv.tsv, predictions/{center}.tsv,
         results/models/{endpoint}/{model}/card.json (threshold / cutoff fixed on training)
Outputs: results/evaluation/{endpoint}/{model}/metrics.tsv  metric, value, 95% CI per cohort
         results/evaluation/{endpoint}/{model}/curves.parquet  ROC, calibration, decision, KM data
"""


rule evaluate_model:
    input:
        cv=rules.cross_validate_model.output.predictions,
        card=rules.fit_model.output.card,
        predictions=expand(
            "results/evaluation/{{endpoint}}/{{model}}/predictions/{center}.tsv",
            center=CENTERS,
        ),
    output:
        metrics=report(
            "results/evaluation/{endpoint}/{model}/metrics.tsv",
            caption="report/metrics.rst",
            category="Evaluation",
            subcategory="{endpoint}",
        ),
        curves="results/evaluation/{endpoint}/{model}/curves.parquet",
    log:
        "logs/evaluate_model/{endpoint}_{model}.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code_version("evaluate_model"),
        cfg=evaluate_cfg,
    script:
        "../scripts/evaluate_model.py"
