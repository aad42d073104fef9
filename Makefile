# Two commands for a new user; both set everything up first and are idempotent.
#   make demo   — install, then run the main job: `icgd run looped-gd`
#   make test   — install (and Chromium for the browser test), then run the test suite (CI)
# TORCH pins the torch install done before the package (a CPU wheel here); elsewhere keep your own:
#   make test TORCH=torch

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install

.PHONY: demo test browser bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,oracles]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/icgd run looped-gd

test: $(STAMP) browser
	$(BIN)/python -m pytest

# Headless Chromium for the HTML report's browser test (tests/reporting/test_html_report.py):
# Debian's chromium + chromium-driver, installed only when `chromium` is not on PATH. Never fails:
# without apt-get (or without root and passwordless sudo) the browser test skips and says why.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
APT_LOG := $(VENV)/apt-chromium.log
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium + chromium-driver with apt-get (for the report's browser test)"; \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
	    -y -qq --no-install-recommends chromium chromium-driver ) >$(APT_LOG) 2>&1 \
	  || echo "warning: chromium not installed (see $(APT_LOG)); the browser test will skip"; \
	else echo "note: no chromium and no apt-get here; the browser test will skip"; fi

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_looped_step.py
	$(BIN)/python benchmarks/bench_looped_gd_run.py
	$(BIN)/python benchmarks/bench_prefix_baselines.py
	$(BIN)/python benchmarks/bench_lasso.py
	$(BIN)/python benchmarks/bench_softmax_models.py
	$(BIN)/python benchmarks/bench_sinkhorn.py
	$(BIN)/python benchmarks/bench_td.py --threads 1
	$(BIN)/python benchmarks/bench_seeds.py
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_vs_reference.py  # skipped without `pip install transformers`

lint: $(STAMP)
	$(BIN)/ruff check icgd tests benchmarks examples
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
