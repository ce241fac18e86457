"""Pseudo-reader masks back to PACS as DICOM SEG (segmentation.export: dicom_seg).

Inputs:  the sheet's DICOM image folder, results/cases/{case}/{seq}/mask_{reader}.nii.gz
Outputs: export/dicom_seg/{case}/{seq}/{reader}.dcm   a SEG on the source series (it
         names the patient, as a SEG must: outside results/, which holds no tag)
Only cases whose image is a DICOM folder; a case excluded upstream gets a marker.
"""


rule export_dicom_seg:
    input:
        image=sheet_image,
        mask="results/cases/{case}/{seq}/mask_{reader}.nii.gz",
    output:
        seg="export/dicom_seg/{case}/{seq}/{reader}.dcm",
    log:
        "logs/export_dicom_seg/{case}_{seq}_{reader}.log",
    conda:
        "../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("export_dicom_seg"),
        dicom=export_dicom_settings,
        method=config["segmentation"]["method"],
    script:
        "../scripts/export_dicom_seg.py"
