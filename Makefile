# The two set-up commands: `make test` (install if needed, run the suite) and, with the detection
# tools, `make demo`. `make install` alone is idempotent: a second run on the same machine takes seconds.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test clean-venv

install:
	@bash tools/install.sh

test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
