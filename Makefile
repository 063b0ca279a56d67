# The two commands of the README: `make run` (the local stack) and `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
export SAM_CLI_TELEMETRY := 0

.PHONY: install run test lint unit integration e2e validate bench build clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# aws-sam-cli pins an older boto3: it gets a venv of its own.
$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli
	@touch $(SAM_STAMP)

## template checks, offline: cfn-lint and sam validate --lint
validate: $(STAMP) $(SAM_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=eu-west-1 $(SAM_VENV)/bin/sam validate --lint --template-file template.yaml

## make run: the whole API on 127.0.0.1 (PORT, default 8080) with an embedded moto AWS
run: $(STAMP)
	$(PY) -m shared.local.stack

## make test: lint, template checks, unit, integration (moto) and end-to-end tests
test: $(STAMP) validate
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/cfn-lint template.yaml

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .ruff_cache .aws-sam build .local
