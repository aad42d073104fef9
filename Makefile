# Two commands for a new user; both set everything up first and are idempotent.
#   make demo   — install, then run the main job: `icgd run looped-gd`
#   make test   — install, then run the test suite (what CI runs)
# TORCH pins the torch install done before the package (a CPU wheel here); elsewhere keep your own:
#   make test TORCH=torch

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,oracles]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/icgd run looped-gd

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_looped_step.py
	$(BIN)/python benchmarks/bench_looped_gd_run.py
	$(BIN)/python benchmarks/bench_prefix_baselines.py
	$(BIN)/python benchmarks/bench_lasso.py
	$(BIN)/python benchmarks/bench_softmax_models.py
	$(BIN)/python benchmarks/bench_sinkhorn.py
	$(BIN)/python benchmarks/bench_vs_reference.py  # skipped without `pip install transformers`

lint: $(STAMP)
	$(BIN)/ruff check icgd tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
