"""How ``pytest -n 2 --dist loadscope`` (make test) shares the tests between workers.

pytest-xdist builds session and module fixtures once per worker. A test module is
therefore one unit of work (its module fixtures run once), and the modules that use an
expensive session fixture are one unit, so that run is made once: ``demo_run`` (the
tiny demo cohort through the whole DAG). ``micro_run`` (the micro cohort's reference
run, about 2 minutes) may be built on both workers: its users (SLURM, faults,
reproducibility, config reruns) are the longest modules, and one worker running them
all one after the other would take longer than building it twice. Cheap session
fixtures (the synthetic cohorts) may be built on both workers too.

Longest units first (:data:`LONGEST_FIRST`, from the suite's ``--durations`` on 2
cores; the rest integration before unit, then by number of tests): with units handed
out in collection order, one long module would start last and run alone.

Written as a scheduler (xdist's documented ``pytest_xdist_make_scheduler`` hook): the
``xdist_group`` marks of ``--dist loadgroup`` have no effect with pytest 9, whose node
ids can no longer be renamed, which is how xdist 3.8 applies them.
"""

from functools import cache
from pathlib import Path

SHARED_RUNS = ("demo_run",)
LONGEST_FIRST = (
    "tests/integration/test_presets.py",  # every preset whole, nnU-Net training included
    "tests/integration/test_slurm.py",  # micro_run + a real slurmctld
    "tests/integration/test_faults.py",  # micro_run + the fault sequence
    "demo_run",
    "tests/integration/test_nnunet.py",
    "tests/integration/test_reproducibility.py",
    "tests/integration/test_config_runs.py",
    "tests/integration/test_published_tables.py",
)


def priority(unit: str) -> tuple[int, int]:
    """Sort key of a work unit: the known long ones first, then integration modules."""
    if unit in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(unit))
    return (1, 0) if unit.startswith("tests/integration/") else (2, 0)


@cache
def unit_of(root: Path, module: str) -> str:
    """The shared run a module uses (its source names the fixture), else the module."""
    path = root / module
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return next((run for run in SHARED_RUNS if run in text), module)


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(config.rootpath, nodeid.split("::", 1)[0])

        def _assign_work_unit(self, node) -> None:
            if not getattr(self, "_ordered", False):  # once, before the first unit goes
                units = sorted(self.workqueue.items(), key=lambda kv: priority(kv[0]))
                self.workqueue.clear()
                self.workqueue.update(units)
                self._ordered = True
            super()._assign_work_unit(node)

    return SharedRunScheduling(config, log)
