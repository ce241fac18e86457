"""Per-case preprocessing: import + QC, resample, bias correction, normalisation.

Inputs:  the sheet's image_{seq} and mask_{reader} files (+ organ mask)
Outputs: results/cases/{case}/{seq}/prepared.nii.gz   resampled, N4 (MRI) / HU window (CT)
         results/cases/{case}/{seq}/mask_{reader}.nii.gz  reader masks on that grid
         results/cases/{case}/{seq}/qc.json            preflight QC + preprocessing record
         results/normalisation/nyul_{seq}.json         Nyul landmarks (training cases only)
         results/cases/{case}/{seq}/image.nii.gz       normalised image (features use this)
A case that fails QC gets exclusion markers instead (radstudy.casestep).
"""


rule prepare_image:
    input:
        image=sheet_image,
        masks=sheet_mask_files,
    output:
        image="results/cases/{case}/{seq}/prepared.nii.gz",
        masks=expand(
            "results/cases/{{case}}/{{seq}}/mask_{reader}.nii.gz", reader=PREP_MASKS
        ),
        qc="results/cases/{case}/{seq}/qc.json",
    log:
        "logs/prepare_image/{case}_{seq}.log",
    benchmark:
        "benchmarks/prepare_image/{case}_{seq}.tsv"
    group:
        "prepare"
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code_version("prepare_image"),
        masks=sheet_masks,
        readers=PREP_MASKS,
        ref_reader=REF_READER,
        cfg=prepare_cfg,
    script:
        "../scripts/prepare_image.py"


rule fit_nyul:
    input:
        unpack(nyul_inputs),
    output:
        landmarks="results/normalisation/nyul_{seq}.json",
    log:
        "logs/fit_nyul/{seq}.log",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_version("fit_nyul"),
        cfg=config["preprocess"],
    script:
        "../scripts/fit_nyul.py"


rule normalize_image:
    input:
        unpack(normalization_extra),
        image="results/cases/{case}/{seq}/prepared.nii.gz",
        mask=f"results/cases/{{case}}/{{seq}}/mask_{REF_READER}.nii.gz",
    output:
        image="results/cases/{case}/{seq}/image.nii.gz",
        qc="results/cases/{case}/{seq}/normalisation.json",
    log:
        "logs/normalize_image/{case}_{seq}.log",
    group:
        "case"
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("normalize_image"),
        cfg=config["preprocess"],
    script:
        "../scripts/normalize_image.py"
