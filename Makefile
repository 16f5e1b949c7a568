# The two set-up commands: `make demo` (install if needed, train the toy Mask R-CNN on CPU, evaluate,
# draw predictions) and `make test` (install if needed, run the suite). `make install` alone is
# idempotent: a second run on the same machine takes seconds.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo demo-seg demo-transfer toy-data benchmark clean-venv

install:
	@bash tools/install.sh

test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

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

# speed, memory and FLOPs beside timm (a Python with timm in $$TIMM_PYTHON), Swin-T and a plain
# reference; about 35 minutes on 2 CPU cores. BENCHMARK_ARGS, e.g. --sizes 224 800x1344
benchmark: install
	$(PYTHON) tools/analysis_tools/benchmark.py --out-dir work_dirs/benchmark $(BENCHMARK_ARGS)

clean-venv:
	rm -rf $(VENV)
