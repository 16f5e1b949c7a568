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

.PHONY: install lint format docs-tables test test-fast test-oldest test-newest demo demo-seg \
	demo-transfer toy-data benchmark gpu-check clean-venv

install:
	@bash tools/install.sh

# pyflakes, pycodestyle and import order at 100 columns (pyproject.toml's [tool.ruff])
lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff check --fix --select I .

# the tables of measured figures in README.md and docs/, remade from docs/results/ (make test checks)
docs-tables: install
	$(PYTHON) tools/dev/docs_tables.py

test: lint
	$(PYTHON) -m pytest tests $(PYTEST_XDIST) $(PYTEST_ARGS)

# what a developer runs between changes: every test that takes under 10 s
test-fast: lint
	$(PYTHON) -m pytest tests $(PYTEST_XDIST) -m "not slow" $(PYTEST_ARGS)

# The oldest supported stack (torch 2.1.2, mmcv 2.1.0 built against it; requirements-oldest.txt) in
# .venv-oldest: mmcoatnet added with the README's command (the stack must not change), then the core
# tests. Not part of `make test`: a cold run downloads 2.9 GB and builds mmcv a second time.
OLDEST_VENV ?= .venv-oldest
CORE_TESTS = tests/test_archs.py tests/test_backbone.py tests/test_attention.py tests/test_rel_pos.py \
	tests/test_windows.py tests/test_inputs.py tests/test_norm_act.py tests/test_checkpoint.py \
	tests/test_classification.py tests/test_mm_integration.py tests/test_layer_decay.py \
	tests/test_unsafe_checkpoints.py tests/test_stack.py tests/test_imports.py tests/test_utils.py
test-oldest:
	VENV=$(OLDEST_VENV) bash tools/install_oldest.sh
	bash tools/dev/add_to_existing_env.sh $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pytest $(CORE_TESTS) $(PYTEST_ARGS)

# The newest stack: OneDL's maintained fork of OpenMMLab (onedl-mmengine 0.10.12, onedl-mmcv 2.3.6
# built from source with CPU ops, onedl-mmdetection 3.5.1, onedl-mmsegmentation 1.4.2,
# onedl-mmpretrain 1.3.6) on torch 2.8.0 and numpy 2 (requirements-newest.txt) in .venv-newest:
# mmcoatnet added with the README's command (the stack must not change), then the core tests and
# tests/test_newest_stack.py (the toy detector, segmentor and classifier trained a step through
# our tools/train.py and through the fork's own). Not part of `make test`, as test-oldest.
NEWEST_VENV ?= .venv-newest
test-newest:
	VENV=$(NEWEST_VENV) bash tools/install_newest.sh
	bash tools/dev/add_to_existing_env.sh $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pytest $(CORE_TESTS) tests/test_newest_stack.py $(PYTEST_ARGS)

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

# speed, memory and FLOPs beside timm, Swin-T and a plain reference (docs/benchmarks.md);
# 21 min 33 s on the idle 2-core machine
# BENCHMARK_ARGS, e.g. --sizes 224 800x1344
benchmark: install
	$(PYTHON) tools/analysis_tools/benchmark.py --out-dir work_dirs/benchmark $(BENCHMARK_ARGS)

# the first command on a GPU machine: environment (driver, GPU, mmcv's CUDA code), mmcv's ops, the
# backbone's numerics, the attention kernels, every recipe's training step and memory, DDP; writes
# work_dirs/gpu_check/gpu_check_<device>.json and .md, and fails naming the first failed check and
# its fix. 10 minutes on one H100-class GPU; on a CPU `GPU_CHECK_ARGS="--device cpu --quick"`
# GPU_CHECK_ARGS, e.g. --quick, --budget-s 300, --recipes maskrcnn_coatnet1_ms-3x_coco
gpu-check: install
	$(PYTHON) tools/analysis_tools/gpu_check.py --out-dir work_dirs/gpu_check $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
