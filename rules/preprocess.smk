"""Per-case preprocessing: import + QC, resample, bias correction, normalisation.

Per extraction batch x sequence (each center's cases in runs of features.batch_size):
one job per batch writes a folder with a subfolder per case, each case in its own
forked process (radstudy.casestep.run_case_batch: a crash excludes that case only).
Inputs:  the sheet's image_{seq} and mask_{reader} files (+ organ mask)
Outputs: results/cases/{seq}/{center}/batch{batch}/prepared/{case}/
             prepared.nii.gz     resampled, N4 (MRI) / HU window (CT)
             mask_{reader}.nii.gz  reader (and organ) masks on that grid
             qc.json             preflight QC + preprocessing record
         results/normalisation/{seq}/{center}/batch{batch}.json  mapped Nyul landmarks
             of one extraction batch's training cases (rule fit_nyul merges them)
         results/normalisation/nyul_{seq}.json         Nyul landmarks (training cases only):
             the mean of the batches' landmarks
         results/cases/{seq}/{center}/batch{batch}/normalised/{case}/
             image.nii.gz        normalised image (features use this)
             normalisation.json  what normalisation did
         results/cohort/qc/{seq}/{center}/batch{batch}.json  one batch x sequence's
             qc.json and normalisation.json records, written by normalize_image (the
             report reads these, not every case's files)
A case that fails QC gets exclusion markers instead (radstudy.casestep).
"""


rule prepare_image:
    input:
        unpack(prepare_inputs),
    output:
        prepared=directory("results/cases/{seq}/{center}/batch{batch}/prepared"),
    log:
        "logs/prepare_image/{center}_{seq}_batch{batch}.log",
    benchmark:
        "benchmarks/prepare_image/{center}_{seq}_batch{batch}.tsv"
    group:
        "prepare"
    conda:
        "../envs/imaging.yaml"
    threads: PER_CASE_THREADS  # cases of the batch at once (see common.smk)
    resources:
        mem_mb=lambda wildcards, threads: 2000 * threads,
        runtime=lambda wildcards, threads: batch_case_runtime(wildcards, threads, 5),
    params:
        code=code_version("prepare_image"),
        cases=prepare_cases,
        readers=PREP_MASKS,
        ref_reader=REF_READER,
        cfg=prepare_cfg,
    script:
        "../scripts/prepare_image.py"


rule measure_nyul:
    input:
        prepared=prepared_folder,
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
        files=nyul_batch_files,
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
        unpack(normalization_inputs),
    output:
        normalised=directory("results/cases/{seq}/{center}/batch{batch}/normalised"),
        records="results/cohort/qc/{seq}/{center}/batch{batch}.json",
    log:
        "logs/normalize_image/{center}_{seq}_batch{batch}.log",
    group:
        "case"
    conda:
        "../envs/imaging.yaml"
    threads: PER_CASE_THREADS
    resources:
        mem_mb=lambda wildcards, threads: 2000 * threads,
        runtime=lambda wildcards, threads: batch_case_runtime(wildcards, threads, 2),
    params:
        code=code_version("normalize_image"),
        cases=normalization_cases,
        rows=qc_rows,
        cfg=config["preprocess"],
    script:
        "../scripts/normalize_image.py"
