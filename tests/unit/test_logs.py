"""Job logging set-up: log file, and ITK kept to the job's threads."""

import logging

import SimpleITK as sitk

from radstudy.logs import limit_threads, setup_logging


def test_setup_logging_writes_the_job_log_and_limits_itk(tmp_path, monkeypatch):
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Snakemake sets for a 1-thread job
    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)  # restored after
    try:
        setup_logging(tmp_path / "logs" / "job.log")
        logging.getLogger("radstudy.test").info("hello from the job")
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
        limit_threads(2)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
        logging.getLogger().handlers.clear()
    assert "hello from the job" in (tmp_path / "logs" / "job.log").read_text()
