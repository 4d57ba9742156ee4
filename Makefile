# crossroute: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CFN_LINT := $(SAM_VENV)/bin/cfn-lint
# Lambda runtime of template.yaml; `make build` needs this interpreter (found by infra/build/find-python).
LAMBDA_PYTHON_VERSION := 3.13
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help run test lint cfn-lint build bench soak clean

help:
	@echo "make run    - create .venv and start the local stack (http://127.0.0.1:3000)"
	@echo "make test   - lint, validate the template, build the Lambda artifact and run every test"
	@echo "make build  - sam build (arm64, Python $(LAMBDA_PYTHON_VERSION)) and precompile .pyc"
	@echo "make bench  - cold-start import times and artifact sizes"
	@echo "make soak   - ~3,000 events with duplicates and reordering through the local stack vs in order; long fuzz run"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "crossroute needs Python 3.11+")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cli]'
	touch $@

# SAM CLI and cfn-lint live in their own venv: their pins must not steer the app's dependencies.
$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet 'aws-sam-cli>=1.140' 'cfn-lint>=1.20'
	touch $@

run: $(VENV)/.installed
	$(PY) -m infra.local

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

cfn-lint: $(SAM_VENV)/.installed
	$(CFN_LINT) template.yaml
	$(SAM) validate --lint --template-file template.yaml --region $(AWS_DEFAULT_REGION)
	$(SAM) validate --template-file template.yaml --region $(AWS_DEFAULT_REGION)  # the SAM transform itself

# Layers are cross-built for arm64 by layers/*/Makefile (no docker); the functions by SAM's python builder,
# which needs python$(LAMBDA_PYTHON_VERSION) on PATH. Then every module is precompiled with that interpreter:
# `sam build` ships no .pyc, and without them each cold start compiles every import.
build: $(SAM_VENV)/.installed
	@lambda_python="$$(infra/build/find-python $(LAMBDA_PYTHON_VERSION))"; \
	  echo "build: Lambda interpreter $$lambda_python"; \
	  export PATH="$$(dirname "$$lambda_python"):$$PATH" LAMBDA_PYTHON="$$lambda_python"; \
	  export LAMBDA_PYTHON_VERSION=$(LAMBDA_PYTHON_VERSION); \
	  $(SAM) build --template-file template.yaml --build-dir .aws-sam/build --parallel; \
	  echo "build: precompiling .pyc (unchecked-hash) under .aws-sam/build"; \
	  "$$lambda_python" -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

test: lint cfn-lint build
	$(PY) -m pytest

bench: $(VENV)/.installed build
	$(PY) -m infra.bench

# Not part of `make test` (about 10 minutes). SOAK_ARGS: e.g. "--seed 7 --senders 50" (python -m infra.soak -h).
soak: $(VENV)/.installed
	$(PY) -m infra.soak $(SOAK_ARGS)
	CROSSROUTE_FUZZ_EXAMPLES=1000 $(PY) -m pytest tests/adapters/test_fuzz_webhooks.py -q

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
