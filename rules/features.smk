"""Feature extraction.

Inputs:  the cases' image.nii.gz and mask_{reader}.nii.gz (the batch folders of
         normalize_image, prepare_image and the pseudo-readers' segmentation)
Outputs: results/features/radiomics/{seq}/{center}/batch{batch}.parquet  pyradiomics,
             long table (case_id, reader, feature, value) of one batch of cases
         results/features/radiomics/{seq}/{center}/batch{batch}.excluded.tsv
             case x reader pairs it could not extract, with the one-line reason
         results/features/deep/{seq}/{center}.parquet  ResNet features (deep.enabled)
         results/features/deep/{seq}/{center}.excluded.tsv  cases it could not process
         results/models/deep/crops/{seq}/{center}/batch{batch}.npz  ROI crops of one
             extraction batch's training cases (radstudy.deep.crop_piece; one job per
             batch writes every sequence's)
         results/models/deep/{seq}.pt   ResNet trained on TRAINING cases (deep.weights: train),
             from the batches' crops
extract_radiomics runs per batch of features.batch_size cases of one center (each
center's sorted cases in runs of that size: a new center gets batches of its own):
the interpreter and pyradiomics start once per batch, and each case runs in its own
forked process (a crash excludes that case only), one per thread at once; the
threads per batch job follow --cores and the number of batches (EXTRACT_THREADS:
one batch on 2 cores gets both, four batches get one each and run side by side),
and each case process keeps ITK's filters to its share of them.
Every reader's mask of a case is extracted in one pass: each image filter (wavelet,
LoG, ...) is applied once for all the masks (radstudy.features.compute_features).
Only the masks the analysis uses are extracted: the model reader's for every case,
every reader's for training cases (the ICC is computed on training cases only).
Groups (for cluster bundling): a batch's prepare_image and segment_slic_fcm form
"prepare"; its normalize_image and extract_radiomics form "case" (normalisation may
wait for the cohort-level Nyul fit, so the two halves cannot share one group). extract_deep
runs per center x sequence (the network is loaded once per center; a new center
gets its own job) and may wait for fit_deep.
"""


rule extract_radiomics:
    input:
        folders=batch_inputs,
    output:
        features="results/features/radiomics/{seq}/{center}/batch{batch}.parquet",
        excluded="results/features/radiomics/{seq}/{center}/batch{batch}.excluded.tsv",
    log:
        "logs/extract_radiomics/{center}_{seq}_batch{batch}.log",
    benchmark:
        "benchmarks/extract_radiomics/{center}_{seq}_batch{batch}.tsv"
    group:
        "case"
    conda:
        "../envs/imaging.yaml"
    threads: EXTRACT_THREADS  # cases of the batch at once (see common.smk)
    resources:
        mem_mb=batch_mem_mb,
        runtime=batch_runtime,
    params:
        code=code_version("extract_radiomics"),
        cfg=config["features"],
        cases=batch_cases,
    script:
        "../scripts/extract_radiomics.py"


rule crop_deep:
    input:
        folders=deep_crop_inputs,
    output:
        crops=expand(
            "results/models/deep/crops/{seq}/{{center}}/batch{{batch}}.npz", seq=SEQS
        ),
    log:
        "logs/crop_deep/{center}_batch{batch}.log",
    conda:
        "../envs/deep.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("crop_deep"),
        rows=deep_crop_rows,
        cfg=config["deep"],
    script:
        "../scripts/crop_deep.py"


rule fit_deep:
    input:
        crops=deep_crop_pieces,
        sheets=train_sheets(),
    output:
        checkpoint="results/models/deep/{seq}.pt",
        history="results/models/deep/{seq}.json",
    log:
        "logs/fit_deep/{seq}.log",
    benchmark:
        "benchmarks/fit_deep/{seq}.tsv"
    conda:
        "../envs/deep.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        code=code_version("fit_deep"),
        cfg=config["deep"],
        endpoint=deep_endpoint,
        seed=config["seed"],
    script:
        "../scripts/fit_deep.py"


rule extract_deep:
    input:
        unpack(deep_center_inputs),
    output:
        features="results/features/deep/{seq}/{center}.parquet",
        excluded="results/features/deep/{seq}/{center}.excluded.tsv",
    log:
        "logs/extract_deep/{center}_{seq}.log",
    benchmark:
        "benchmarks/extract_deep/{center}_{seq}.tsv"
    conda:
        "../envs/deep.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_version("extract_deep"),
        cases=lambda wildcards: center_cases(wildcards.center),
        files=deep_center_files,
        cfg=config["deep"],
        seed=config["seed"],
    script:
        "../scripts/extract_deep.py"
