"""Per-case feature extraction.

Inputs:  results/cases/{case}/{seq}/image.nii.gz, mask_{reader}.nii.gz
Outputs: results/cases/{case}/{seq}/features_{reader}.parquet  pyradiomics, one row
One job per case x sequence extracts every reader's mask: the outputs stay per
reader (a bad mask excludes only that reader), but the interpreter start-up and
extractor set-up are paid once, and each image filter (wavelet, LoG, ...) is
applied once for all the readers' masks (radstudy.features.compute_features).
Only the masks the analysis uses are extracted: the model reader's for every case,
every reader's for training cases (the ICC is computed on training cases only);
the other readers' files of a test or external case are markers saying so.
Groups (for cluster bundling): prepare_image and segment_slic_fcm form "prepare";
normalize_image and extract_radiomics form "case" (normalisation may wait for the
cohort-level Nyul fit, so the two halves cannot share one group). extract_deep
runs per center x sequence (the network is loaded once per center; a new center
gets its own job) and may wait for fit_deep.
         results/features/deep/{seq}/{center}.parquet  ResNet features (deep.enabled)
         results/features/deep/{seq}/{center}.excluded.tsv  cases it could not process
         results/models/deep/{seq}.pt   ResNet trained on TRAINING cases (deep.weights: train)
"""


rule extract_radiomics:
    input:
        image=rules.normalize_image.output.image,
        masks=expand(
            "results/cases/{{case}}/{{seq}}/mask_{reader}.nii.gz",
            reader=FEATURE_READERS,
        ),
    output:
        features=expand(
            "results/cases/{{case}}/{{seq}}/features_{reader}.parquet",
            reader=FEATURE_READERS,
        ),
    log:
        "logs/extract_radiomics/{case}_{seq}.log",
    benchmark:
        "benchmarks/extract_radiomics/{case}_{seq}.tsv"
    group:
        "case"
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=config["features"],
        readers=FEATURE_READERS,
        needed=extraction_readers,
    script:
        "../scripts/extract_radiomics.py"


rule fit_deep:
    input:
        images=expand("results/cases/{case}/{{seq}}/image.nii.gz", case=TRAIN_IDS),
        masks=expand(
            "results/cases/{case}/{{seq}}/mask_{reader}.nii.gz",
            case=TRAIN_IDS,
            reader=MODEL_READER,
        ),
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
        cfg=config["deep"],
        cases=TRAIN_IDS,
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
        cases=lambda wildcards: center_cases(wildcards.center),
        cfg=config["deep"],
        seed=config["seed"],
    script:
        "../scripts/extract_deep.py"
