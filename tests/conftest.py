"""Worker groups for ``pytest -n 2 --dist loadgroup`` (make test).

pytest-xdist builds session and module fixtures once per worker. A test module is
therefore one group (its module fixtures run once), and the modules that share an
expensive session fixture (a whole Snakemake run) are one group, so that run is made
once: ``demo_run`` (the tiny demo cohort through the whole DAG) and ``micro_run`` (the
reference run of the SLURM, resume and fault tests). Cheap session fixtures (the
synthetic cohorts) may be built on both workers. Without xdist the marks do nothing.
"""

import pytest

SHARED_RUNS = ("demo_run", "micro_run")


def pytest_collection_modifyitems(config, items):
    groups: dict[str, str] = {}  # module -> group (a shared run's name, else the module)
    for item in items:
        module = item.nodeid.split("::")[0]
        for run in SHARED_RUNS:
            if run in getattr(item, "fixturenames", ()):
                groups.setdefault(module, run)
    for item in items:
        module = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(groups.get(module, module)))
