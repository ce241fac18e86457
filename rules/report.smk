"""The HTML report a clinician reads.

Inputs:  cohort tables, exclusions, ICC, model cards, metrics, curves and per-center
         predictions (Kaplan-Meier with the number at risk) of every endpoint x
         model, harmonised tables (ComBat diagnostics), per-batch QC records
         (results/cohort/qc/{seq}/{center}/batch{batch}.json: never every case's files)
Outputs: results/report/report.html  one self-contained file (figures inlined)
         results/report/figures/     every figure of the report as PNG + SVG, and
                                     captions.tsv (file, caption): snakemake --report
                                     lists each PNG with its caption (figure.rst)
"""

from radstudy.features import load_params
from radstudy.report_format import figure_label


localrules:
    render_report,


rule render_report:
    input:
        cases="results/cohort/cases.tsv",
        excluded=rules.collect_exclusions.output.excluded,
        icc=rules.compute_icc.output.icc,
        combat=rules.fit_combat.output.summary,
        raw=expand("results/features/raw/{center}.parquet", center=CENTERS),
        columns=(
            expand("results/features/columns/{center}.tsv", center=CENTERS)
            if FEATURE_TABLE
            else []
        ),
        harmonized=expand(
            "results/features/harmonized/{center}.parquet", center=CENTERS
        ),
        cards=report_inputs("results/models/{endpoint}/{model}/card.json"),
        selections=report_inputs("results/models/{endpoint}/{model}/selection.tsv"),
        searches=report_inputs("results/models/{endpoint}/{model}/search.parquet"),
        metrics=report_inputs("results/evaluation/{endpoint}/{model}/metrics.tsv"),
        curves=report_inputs("results/evaluation/{endpoint}/{model}/curves.parquet"),
        predictions=expand(
            report_inputs(
                "results/evaluation/{endpoint}/{model}/predictions/{{center}}.tsv"
            ),
            center=CENTERS,
        ),
        segmentation=segmentation_outputs(),
        qc=qc_pieces(),
    output:
        html=report(
            "results/report/report.html",
            caption="report/report.rst",
            category="Report",
        ),
        figures=report(
            directory("results/report/figures"),
            patterns=["{n,[0-9]+}_{name}.png"],
            caption="report/figure.rst",
            category="Report figures",
            labels=lambda wildcards, output: figure_label(
                output.figures, f"{wildcards.n}_{wildcards.name}"
            ),
        ),
    log:
        "logs/render_report.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_version("render_report"),
        cfg=report_cfg(),
        options=config["report"],
        # the extraction's pyradiomics params, for the checklists (none: feature table)
        radiomics=lambda wildcards: (
            {}
            if config["cohort"]["features_table"]
            else load_params(config["features"])
        ),
    script:
        "../scripts/render_report.py"
