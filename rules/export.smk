"""Pseudo-reader masks back to PACS as DICOM SEG or RTSTRUCT (segmentation.export:
dicom_seg or rtstruct).

Inputs:  the sheet's DICOM image folder, the case's mask_{reader}.nii.gz (its batch folder)
Outputs: export/{fmt}/{case}/{seq}/{reader}.dcm   a SEG (fmt dicom_seg) or an RTSTRUCT
         (fmt rtstruct) on the source series (it names the patient, as such a file
         must: outside results/, which holds no tag)
Only cases whose image is a DICOM folder; a case excluded upstream gets a marker.
"""


rule export_mask:
    input:
        image=sheet_image,
        folder=export_mask_folder,
    output:
        export="export/{fmt}/{case}/{seq}/{reader}.dcm",
    log:
        "logs/export_mask/{fmt}_{case}_{seq}_{reader}.log",
    wildcard_constraints:
        fmt="dicom_seg|rtstruct",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("export_mask"),
        mask=export_mask_file,
        dicom=export_dicom_settings,
        method=config["segmentation"]["method"],
    script:
        "../scripts/export_mask.py"
