"""Unsupervised segmentation as an extra pseudo-reader, and agreement analysis.

Inputs:  prepare_image's batch folders: prepared.nii.gz (+ mask_organ.nii.gz), reader masks
Outputs: results/cases/{seq}/{center}/batch{batch}/slic/{case}/  per extraction batch
             mask_slic.nii.gz        SLIC superpixels + fuzzy c-means
             membership_slic.nii.gz  fuzzy membership (soft output)
         results/segmentation/{seq}/{center}/batch{batch}.json  per-case Dice, volumes and
             entropy of one extraction batch (radstudy.agreement; one job per batch
             writes every sequence's), merged into
         results/segmentation/{seq}/dice_pairwise.tsv, dice_matrix.tsv, volume_error.tsv,
             volume_summary.tsv, entropy.tsv   readers vs consensus vs methods
         results/segmentation/{seq}/overlay.png  best / median / worst case by Dice
With segmentation.method slic_fcm, features of pseudo-reader "slic" exist too; nnU-Net
(pseudo-reader "nnunet", rule predict_nnunet) is in rules/nnunet.smk.
"""


localrules:
    evaluate_segmentation,


rule segment_slic_fcm:
    input:
        prepared=prepared_folder,
    output:
        slic=directory("results/cases/{seq}/{center}/batch{batch}/slic"),
    log:
        "logs/segment_slic_fcm/{center}_{seq}_batch{batch}.log",
    benchmark:
        "benchmarks/segment_slic_fcm/{center}_{seq}_batch{batch}.tsv"
    group:
        "prepare"
    conda:
        "../envs/imaging.yaml"
    threads: PER_CASE_THREADS
    resources:
        mem_mb=lambda wildcards, threads: 4000 * threads,
        runtime=lambda wildcards, threads: batch_case_runtime(wildcards, threads, 5),
    params:
        code=code_version("segment_slic_fcm"),
        cases=slic_cases,
        cfg=config["segmentation"],
        seed=config["seed"],
    script:
        "../scripts/segment_slic_fcm.py"


rule measure_segmentation:
    input:
        folders=segmentation_folders,
    output:
        pieces=expand(
            "results/segmentation/{seq}/{{center}}/batch{{batch}}.json", seq=SEQS
        ),
    log:
        "logs/measure_segmentation/{center}_batch{batch}.log",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("measure_segmentation"),
        rows=segmentation_rows,
        readers=HUMAN_READERS,
    script:
        "../scripts/measure_segmentation.py"


rule evaluate_segmentation:
    input:
        pieces=segmentation_pieces,
    output:
        pairs="results/segmentation/{seq}/dice_pairwise.tsv",
        matrix="results/segmentation/{seq}/dice_matrix.tsv",
        volumes="results/segmentation/{seq}/volume_summary.tsv",
        entropy="results/segmentation/{seq}/entropy.tsv",
        overlay=report(
            "results/segmentation/{seq}/overlay.png",
            caption="report/segmentation_overlay.rst",
            category="Segmentation",
        ),
    log:
        "logs/evaluate_segmentation/{seq}.log",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_version("evaluate_segmentation"),
        readers=HUMAN_READERS,
        seed=config["seed"],
    script:
        "../scripts/evaluate_segmentation.py"
