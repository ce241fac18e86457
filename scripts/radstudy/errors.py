"""Errors that exclude one case (never the run) and errors that stop the run."""


class CaseError(Exception):
    """A problem with one case's input: the case is excluded, the others go on.

    The message is one line and names the case, the file and the problem, e.g.
    ``case HB012: images/HB012_T2.nii.gz: mask is empty``.
    """

    def __init__(self, case: str, file: str, problem: str):
        self.case, self.file, self.problem = str(case), str(file), str(problem)
        super().__init__(f"case {self.case}: {self.file}: {self.problem}")


class ConfigError(Exception):
    """A problem with the config or the cohort sheet: the run stops before any job."""
