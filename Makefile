# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install tools venv docs lint demo test bench crd-schemas clean

install: tools venv

tools:
	bash scripts/install-tools.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,serving]'
	touch $@

docs: tools
	$(BIN)/helm-docs --chart-search-root charts --log-level warning

lint: install
	nchart lint

demo: install
	nchart render inf2-24xlarge --env prod

test: install
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest

bench: install
	nchart bench inf2-24xlarge --env prod

# Regenerates the CRD schemas kubeconform uses (needs the Go module proxy).
crd-schemas: venv
	cd "$$(mktemp -d)" && go mod init crd-schemas >/dev/null 2>&1 && $(CURDIR)/$(VENV)/bin/python $(CURDIR)/scripts/update-crd-schemas.py

clean:
	rm -rf build .pytest_cache
