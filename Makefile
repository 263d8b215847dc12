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

LITELLM_VENV := $(HOME)/.cache/modelplex-bench/litellm

# LiteLLM goes into its own venv: it pins an older openai SDK than the conformance tests use.
bench: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	@test -x $(LITELLM_VENV)/bin/python || ($(PYTHON) -m venv $(LITELLM_VENV) && \
		$(LITELLM_VENV)/bin/pip install -q --disable-pip-version-check 'litellm[proxy]') || \
		echo "bench: could not install LiteLLM; its comparisons will be skipped"
	@command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || true)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
