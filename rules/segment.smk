"""Unsupervised / model segmentation as an extra pseudo-reader.

Inputs:  results/cases/{case}/{seq}/prepared.nii.gz (+ the sheet's organ mask)
Outputs: results/cases/{case}/{seq}/mask_slic.nii.gz        SLIC superpixels + fuzzy c-means
         results/cases/{case}/{seq}/membership_slic.nii.gz  fuzzy membership (soft output)
Used when segmentation.method is slic_fcm; features of reader "slic" then exist.
"""


rule segment_slic_fcm:
    input:
        image=rules.prepare_image.output.image,
        organ=organ_mask,
    output:
        mask="results/cases/{case}/{seq}/mask_slic.nii.gz",
        membership="results/cases/{case}/{seq}/membership_slic.nii.gz",
    log:
        "logs/segment_slic_fcm/{case}_{seq}.log",
    benchmark:
        "benchmarks/segment_slic_fcm/{case}_{seq}.tsv"
    group:
        "case"
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=config["segmentation"],
        seed=config["seed"],
    script:
        "../scripts/segment_slic_fcm.py"
