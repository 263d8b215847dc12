# modelplex: the two commands are `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SHARED_TIKTOKEN := $(abspath ../shared/data/tiktoken)
export TIKTOKEN_CACHE_DIR ?= $(if $(wildcard $(SHARED_TIKTOKEN)),$(SHARED_TIKTOKEN),)

.PHONY: help venv demo test lint bench services clean fmt

help:
	@echo "make demo   - start fake providers + the gateway, drive a workload, show the tour"
	@echo "make test   - lint and run the whole test suite"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks side by side with raw aiohttp and LiteLLM"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all]'
	@touch $(STAMP)

venv: $(STAMP)

services: $(STAMP)
	@$(PY) scripts/services.py
	@bash scripts/browser.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

test: $(STAMP) services lint
	$(VENV)/bin/pytest

demo: $(STAMP)
	$(VENV)/bin/modelplex demo

bench: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
