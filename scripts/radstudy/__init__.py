"""radstudy: the logic behind the radstudy Snakemake workflow.

Every function here is pure Python over paths, arrays and DataFrames; no module
imports Snakemake, so the whole package is unit-tested on its own.
"""

__version__ = "0.1.0"
