"""Per-case preprocessing: import + QC, resample, bias correction, normalisation.

Inputs:  the sheet's image_{seq} and mask_{reader} files (+ organ mask)
Outputs: results/cases/{case}/{seq}/prepared.nii.gz   resampled, N4 (MRI) / HU window (CT)
         results/cases/{case}/{seq}/mask_{reader}.nii.gz  reader masks on that grid
         results/cases/{case}/{seq}/qc.json            preflight QC + preprocessing record
         results/normalisation/{seq}/{center}/batch{batch}.json  mapped Nyul landmarks
             of one extraction batch's training cases (rule fit_nyul merges them)
         results/normalisation/nyul_{seq}.json         Nyul landmarks (training cases only):
             the mean of the batches' landmarks
         results/cases/{case}/{seq}/image.nii.gz       normalised image (features use this)
         results/cohort/qc/{center}/batch{batch}.json  one batch's qc.json and
             normalisation.json records (the report reads these, not every case's files)
A case that fails QC gets exclusion markers instead (radstudy.casestep).
"""


localrules:
    collect_qc,


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


rule measure_nyul:
    input:
        unpack(nyul_batch_inputs),
    output:
        landmarks="results/normalisation/{seq}/{center}/batch{batch}.json",
    log:
        "logs/measure_nyul/{center}_{seq}_batch{batch}.log",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("measure_nyul"),
        cases=batch_train_cases,
        cfg=config["preprocess"],
    script:
        "../scripts/measure_nyul.py"


rule fit_nyul:
    input:
        pieces=nyul_pieces,
    output:
        landmarks="results/normalisation/nyul_{seq}.json",
    log:
        "logs/fit_nyul/{seq}.log",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("fit_nyul"),
        cfg=config["preprocess"],
        region="mask" if nyul_region() else "foreground",
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


rule collect_qc:
    input:
        unpack(qc_inputs),
    output:
        records="results/cohort/qc/{center}/batch{batch}.json",
    log:
        "logs/collect_qc/{center}_batch{batch}.log",
    conda:
        "../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("collect_qc"),
        rows=qc_rows,
    script:
        "../scripts/collect_qc.py"
