# The two set-up commands: `make demo` (install if needed, train the toy Mask R-CNN on CPU, evaluate,
# draw predictions) and `make test` (install if needed, run the suite). `make install` alone is
# idempotent: a second run on the same machine takes seconds.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo demo-seg toy-data clean-venv

install:
	@bash tools/install.sh

test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: install
	PYTHON=$(PYTHON) bash tools/demo.sh det

demo-seg: install
	PYTHON=$(PYTHON) bash tools/demo.sh seg

toy-data: install
	$(PYTHON) tools/make_toy_data.py --out data

clean-venv:
	rm -rf $(VENV)
