# The two set-up commands: `make demo` (install if needed, train the toy Mask R-CNN on CPU, evaluate,
# draw predictions) and `make test` (install if needed, lint, run the whole suite on two workers).
# `make install` alone is idempotent: a second run on the same machine takes seconds.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# two pytest-xdist workers: the suite spends most of its time in single-threaded tool processes;
# tests sharing a trained fixture stay on one worker (tests/conftest.py)
PYTEST_WORKERS ?= 2
PYTEST_XDIST = -n $(PYTEST_WORKERS)
PYTEST_ARGS ?=

.PHONY: install lint format test test-fast demo demo-seg demo-transfer toy-data benchmark clean-venv

install:
	@bash tools/install.sh

# pyflakes, pycodestyle and import order at 100 columns (pyproject.toml's [tool.ruff])
lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff check --fix --select I .

test: lint
	$(PYTHON) -m pytest tests $(PYTEST_XDIST) $(PYTEST_ARGS)

# what a developer runs between changes: every test that takes under 10 s
test-fast: lint
	$(PYTHON) -m pytest tests $(PYTEST_XDIST) -m "not slow" $(PYTEST_ARGS)

demo: install
	PYTHON=$(PYTHON) bash tools/demo.sh det

demo-seg: install
	PYTHON=$(PYTHON) bash tools/demo.sh seg

# pre-train on toy classification (mmpretrain), fine-tune Mask R-CNN and UperNet from it and from
# scratch, compare; 30 minutes measured on 2 CPU cores (one thread, beside other jobs)
demo-transfer: install
	PYTHON=$(PYTHON) bash tools/demo.sh transfer

toy-data: install
	$(PYTHON) tools/make_toy_data.py --out data

# speed, memory and FLOPs beside timm, Swin-T and a plain reference (docs/benchmarks.md).
# BENCHMARK_ARGS, e.g. --sizes 224 800x1344
benchmark: install
	$(PYTHON) tools/analysis_tools/benchmark.py --out-dir work_dirs/benchmark $(BENCHMARK_ARGS)

clean-venv:
	rm -rf $(VENV)
