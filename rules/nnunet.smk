"""nnU-Net v2 as a pseudo-reader (segmentation.method nnunet; radstudy.nnunet).

Trained inside the study (no segmentation.nnunet_model, nnunet_train true), per sequence:
Inputs:  prepared.nii.gz + mask_{reference reader}.nii.gz (rule prepare_image's batch
         folders) of the TRAINING cases only (the fit discipline: never a test or external case)
Outputs: results/nnunet/{seq}/raw/Dataset001_{seq}/  nnU-Net raw dataset (dataset.json,
             imagesTr/, labelsTr/), results/nnunet/{seq}/export.json (cases, left out)
         results/nnunet/{seq}/preprocessed/           nnU-Net plans + preprocessed data
         results/nnunet/{seq}/model/                  the trained model (nnUNet_results),
             results/nnunet/{seq}/model.json (card: trainer, folds, device, cases, time)
Every case (the trained model, or a ready one: segmentation.nnunet_model), predicted per
extraction batch (rule predict_nnunet: torch and the model load once per batch):
         results/nnunet/{seq}/predictions/{center}/batch{batch}/  {case}_mask.nii.gz,
             {case}_membership.nii.gz (exclusion markers for a case it could not predict):
             the pseudo-reader "nnunet"'s mask and foreground probability
Training is one job (threads, and a GPU with nnunet_device cuda: resources gpu); a new
center's cases are predicted with the frozen model and train nothing.
"""


rule export_nnunet_dataset:
    input:
        prepared=nnunet_training_inputs,
    output:
        raw=directory("results/nnunet/{seq}/raw"),
        summary="results/nnunet/{seq}/export.json",
    log:
        "logs/export_nnunet_dataset/{seq}.log",
    conda:
        "../envs/nnunet.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("export_nnunet_dataset"),
        cases=TRAIN_IDS,
        files=nnunet_training_files,
        modality=config["cohort"]["modality"],
    script:
        "../scripts/export_nnunet_dataset.py"


rule plan_nnunet:
    input:
        raw=rules.export_nnunet_dataset.output.raw,
    output:
        preprocessed=directory("results/nnunet/{seq}/preprocessed"),
        plans="results/nnunet/{seq}/plans.json",
    log:
        "logs/plan_nnunet/{seq}.log",
    conda:
        "../envs/nnunet.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        code=code_version("plan_nnunet"),
        configuration=config["segmentation"]["nnunet_configuration"],
    script:
        "../scripts/plan_nnunet.py"


rule train_nnunet:
    input:
        raw=rules.export_nnunet_dataset.output.raw,
        preprocessed=rules.plan_nnunet.output.preprocessed,
    output:
        model=directory("results/nnunet/{seq}/model"),
        card="results/nnunet/{seq}/model.json",
    log:
        "logs/train_nnunet/{seq}.log",
    benchmark:
        "benchmarks/train_nnunet/{seq}.tsv"
    conda:
        "../envs/nnunet.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=2880,
        gpu=NNUNET_GPUS,
    params:
        code=code_version("train_nnunet"),
        cfg=nnunet_train_cfg(),
        seed=config["seed"],
    script:
        "../scripts/train_nnunet.py"


rule predict_nnunet:
    input:
        unpack(nnunet_batch_inputs),
    output:
        predictions=directory("results/nnunet/{seq}/predictions/{center}/batch{batch}"),
    log:
        "logs/predict_nnunet/{center}_{seq}_batch{batch}.log",
    benchmark:
        "benchmarks/predict_nnunet/{center}_{seq}_batch{batch}.tsv"
    conda:
        "../envs/nnunet.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=nnunet_batch_runtime,
    params:
        code=code_version("predict_nnunet"),
        images=nnunet_batch_images,
        folds=config["segmentation"]["nnunet_folds"],
        device=nnunet_predict_device(),
    script:
        "../scripts/predict_nnunet.py"
