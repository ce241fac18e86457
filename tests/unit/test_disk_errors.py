"""A full disk is the machine's fault, never a case's: it fails the job with one clear
line (no traceback) and never excludes a case, and a file the disk cut short is never
taken as written."""

import errno
import gzip
import logging
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from radstudy.casestep import case_step_reason
from radstudy.errors import disk_error, disk_error_line
from radstudy.imageio import check_written, write_image
from radstudy.logs import job_name, setup_logging

ENOSPC = OSError(errno.ENOSPC, "No space left on device", "results/cases/A1/T2/image.nii.gz")


def test_disk_errors_are_told_from_case_errors():
    assert disk_error(ENOSPC)
    assert disk_error(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # ITK and pyarrow word it in their own messages
    assert disk_error(RuntimeError("ITK ERROR: Write: fwrite: No space left on device"))
    assert not disk_error(OSError(errno.ENOENT, "No such file or directory", "x.nii.gz"))
    assert not disk_error(RuntimeError("ITK ERROR: Could not create IO object"))
    line = disk_error_line(ENOSPC, "prepare_image/A1_T2")
    assert "\n" not in line
    assert line.startswith(
        "prepare_image/A1_T2: No space left on device (results/cases/A1/T2/image.nii.gz): "
    )
    assert "run the same command again" in line


def test_a_full_disk_never_excludes_a_case():
    def full():
        raise ENOSPC

    with pytest.raises(OSError) as err:
        case_step_reason("A1", [], full)
    assert err.value.errno == errno.ENOSPC
    # any other error still excludes the case in one line
    assert (
        case_step_reason("A1", [], lambda: 1 / 0) == "case A1: ZeroDivisionError: division by zero"
    )


def test_an_image_cut_short_is_never_taken_as_written(tmp_path):
    img = sitk.GetImageFromArray(np.arange(4000, dtype=np.float32).reshape(10, 20, 20))
    path = tmp_path / "image.nii.gz"
    write_image(img, path)  # whole: passes its own check
    check_written(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # what ITK leaves when the disk fills up
    with pytest.raises(OSError) as err:
        check_written(path)
    assert err.value.errno in (errno.EIO, errno.ENOSPC) and disk_error(err.value)
    assert err.value.filename == str(path)
    path.write_bytes(gzip.compress(b"x" * 100))  # any whole gzip file passes
    check_written(path)


def test_job_fails_on_a_full_disk_with_one_line(tmp_path, capsys):
    assert job_name("logs/extract_radiomics/A_T2_batch001.log") == "extract_radiomics/A_T2_batch001"
    assert job_name(tmp_path / "logs" / "render_report.log") == "render_report"
    log = tmp_path / "logs" / "prepare_image" / "A1_T2.log"
    hook = sys.excepthook
    try:
        setup_logging(log)
        sys.excepthook(OSError, ENOSPC, None)
    finally:
        sys.excepthook = hook
        for h in logging.getLogger().handlers:
            h.close()
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert err.splitlines() == [f"radstudy: {disk_error_line(ENOSPC, 'prepare_image/A1_T2')}"]
    assert "Traceback" not in log.read_text()
    assert "No space left on device" in log.read_text()
