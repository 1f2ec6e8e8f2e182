# hdh: every target installs what it needs first. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install demo test lint format bench docs clean

help:
	@echo "make demo     install everything, then hdh demo: a hub moved off Azure, served"
	@echo "make test     install everything, start the test servers, run lint and the whole suite"
	@echo "make install  system packages (if missing), Python environment, Azurite"
	@echo "make lint     ruff (lint and format check) and mypy --strict"
	@echo "make format   apply ruff's formatting and fixes"
	@echo "make bench    run the benchmarks in bench/ (ratios against a baseline run alongside)"
	@echo "make docs     regenerate docs/reference/cli.md and docs/reference/openapi.json"

install: $(VENV)/.installed node_modules/.installed

.tools/.system-checked: scripts/install-system.sh
	scripts/install-system.sh
	@mkdir -p .tools && touch $@

$(UV): | .tools/.system-checked
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python "$$(command -v python3)"
	@touch $@

node_modules/.installed: package.json package-lock.json | .tools/.system-checked
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: install
	rm -rf demo-hub
	$(BIN)/hdh demo demo-hub

test: install lint
	HDH_TEST_NO_SKIP=1 $(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

bench: install
	HDH_BENCH=1 scripts/install-system.sh
	$(BIN)/python bench/run.py

docs: install
	$(BIN)/python scripts/gen_reference.py

clean:
	rm -rf .tools $(VENV) node_modules demo-hub .pytest_cache .mypy_cache .ruff_cache
