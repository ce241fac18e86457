# radstudy: `make demo` runs the default study end to end, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
SNAKEMAKE := $(BIN)/snakemake

.PHONY: demo test test-fast lint format docs report-pdf bench bench-presets bench-tables bench-nnunet clean venv venv-nnunet

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

## venv-nnunet: the optional nnU-Net v2 extra (segmentation.method nnunet), on the pinned CPU torch
venv-nnunet: $(VENV)/.nnunet-installed

$(VENV)/.nnunet-installed: $(VENV)/.installed requirements-nnunet.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nnunet.txt
	$(BIN)/python -c "import nnunetv2.run.run_training, torch; assert torch.__version__.startswith('2.13.0')"
	touch $@

## demo: the whole DAG on the default config (synthetic 4-center cohort) -> results/report/report.html
demo: venv
	$(SNAKEMAKE) --cores $(CORES)
	@echo "report: results/report/report.html"

## report-pdf: print the report to results/report/report.pdf (headless chromium; one section a page)
CHROMIUM ?= chromium
REPORT   ?= results/report/report.html
report-pdf:
	@test -f $(REPORT) || { echo "no $(REPORT): run make demo (or snakemake) first"; exit 1; }
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --no-pdf-header-footer \
		--virtual-time-budget=10000 --print-to-pdf=$(REPORT:.html=.pdf) "file://$(abspath $(REPORT))"
	@echo "pdf: $(REPORT:.html=.pdf)"

## test: unit + integration tests (real Snakemake runs on tiny cohorts)
test: venv
	$(BIN)/python -m pytest -q --durations=25 -n 2 --dist loadscope

## test-fast: unit tests only
test-fast: venv
	$(BIN)/python -m pytest -q tests/unit

lint: venv
	$(BIN)/ruff check scripts tests bench
	$(BIN)/ruff format --check scripts tests bench
	$(BIN)/snakefmt --check Snakefile rules
	$(SNAKEMAKE) --lint

format: venv
	$(BIN)/ruff format scripts tests bench
	$(BIN)/snakefmt Snakefile rules

## docs: regenerate README.md's configuration table from config.schema.yaml
docs: venv
	$(BIN)/python -m radstudy.configdoc

bench: venv
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_cohort.py

## bench-tables: the ten published feature tables whole (CV AUC vs their references) and the speed of 100 x 1,000 / 1,000 x 2,000 tables
bench-tables: venv
	$(BIN)/python bench/bench_tables.py --speed

## bench-nnunet: nnU-Net trained in the study (short CPU schedule) vs SLIC + FCM, Dice against the true masks
bench-nnunet: venv-nnunet
	$(BIN)/python bench/bench_nnunet.py

## bench-presets: wall time of the demo and of every study preset at its real size (2 cores)
bench-presets: venv
	$(BIN)/python bench/bench_presets.py

clean:
	rm -rf results logs benchmarks .snakemake
