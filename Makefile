# The two commands of the README: `make run` (the local stack) and `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
export SAM_CLI_TELEMETRY := 0

.PHONY: install run test lint unit integration e2e validate cfn-lint sam-validate bench build fuzz load audit clean

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
validate: cfn-lint sam-validate

cfn-lint: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

sam-validate: $(STAMP) $(SAM_STAMP)
	AWS_DEFAULT_REGION=eu-west-1 $(SAM_VENV)/bin/sam validate --lint --template-file template.yaml

## make run: the whole API on 127.0.0.1 (PORT, default 8080) with an embedded moto AWS
run: $(STAMP)
	$(PY) -m shared.local.stack

## make test: lint, template checks, unit, integration (moto) and end-to-end tests
# The template checks and the audit are single-threaded and partly network: run side by side.
test: $(STAMP) $(SAM_STAMP)
	$(MAKE) --no-print-directory -j3 cfn-lint sam-validate audit
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadfile --ignore=tests/e2e/test_fuzz.py
	# schemathesis gives every case of an operation the same node id: xdist would run one of them.
	$(PY) -m pytest -p no:xdist tests/e2e/test_fuzz.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/cfn-lint template.yaml

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

## make bench: every bench script, one summary table
bench: $(STAMP)
	$(PY) bench/run_all.py

## make build: deployable artifacts (python3.13, arm64) without Docker, import-checked
build: $(STAMP) $(SAM_STAMP)
	$(PY) layers/build.py

## make fuzz: schemathesis against every module's OpenAPI on the local stack, many examples
# (make test runs the same file with 5 examples per operation and a fixed seed). A random seed
# each time, printed in the summary: OCPI_FUZZ_SEED=<seed> make fuzz replays it.
fuzz: $(STAMP)
	OCPI_FUZZ_EXAMPLES=$${OCPI_FUZZ_EXAMPLES:-200} OCPI_FUZZ_SEED=$${OCPI_FUZZ_SEED:-random} OCPI_FUZZ_COVERAGE=1 \
		$(PY) -m pytest -p no:randomly -o timeout=3600 tests/e2e/test_fuzz.py

## make load: 20 partners pushing EVSE status and crawling locations on the local stack (~90 s;
## LOAD_ARGS="--duration 60 --partners 10", see bench/load.py --help)
load: $(STAMP)
	$(PY) bench/load.py $(LOAD_ARGS)

## make audit: bandit (our code) and pip-audit (our dependencies)
# bandit: skips and their reasons in pyproject.toml [tool.bandit]; one-off `# nosec BXXX` inline.
# pip-audit: what the layer ships (every transitive pin is listed: no resolution, no temporary
# venv), then the dev venv CI runs in (local packages only, our own editable install left out).
# A vulnerability with no fixed release yet: `--ignore-vuln ID` on that line, a comment here why.
audit: $(STAMP)
	$(VENV)/bin/bandit -q -c pyproject.toml -r shared functions layers -x layers/shared/python
	$(VENV)/bin/pip-audit --progress-spinner off --no-deps --disable-pip -r layers/dependencies/requirements.txt
	$(VENV)/bin/pip-audit --progress-spinner off --skip-editable

clean:
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .ruff_cache .aws-sam build .local
