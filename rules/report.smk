"""The HTML report a clinician reads.

Inputs:  cohort tables, exclusions, ICC, model cards, metrics and curves of every
         endpoint x model, harmonised tables (ComBat diagnostics)
Outputs: results/report/report.html  one self-contained file (figures inlined)
"""


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
        segmentation=segmentation_outputs(),
        qc=expand(
            "results/cases/{case}/{seq}/qc.json", case=sorted(ROW.index), seq=SEQS
        ),
        normalisation=expand(
            "results/cases/{case}/{seq}/normalisation.json",
            case=sorted(ROW.index),
            seq=SEQS,
        ),
    output:
        html=report(
            "results/report/report.html",
            caption="report/report.rst",
            category="Report",
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
    script:
        "../scripts/render_report.py"
