# The only entry point for humans and CI (STYLE.md §10). `make test` is what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Python 3.13: the Lambda runtime's version. The machine has it under pyenv; any python3.13 on PATH works too.
PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.13.0/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
# Only the folders that exist yet (local/ and bench/ arrive with issues #7 and #8).
PY_SOURCES := $(wildcard layers functions sandbox local bench scripts tests)
MYPY_TARGETS := layers/aisp/aisp functions scripts $(wildcard sandbox local bench)
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Redocly CLI (make lint) offline: no usage telemetry, no update check.
export REDOCLY_TELEMETRY := off
export REDOCLY_SUPPRESS_UPDATE_NOTICE := true
# sam build's python3.13 workflow (the functions) and layers/aisp/Makefile (the layer) run `python3.13` from PATH.
export PATH := $(dir $(PYTHON)):$(PATH)

.PHONY: help dev browser docker lambda-image iac deps deps-check format lint mypy validate build unit aws integration pytest test \
	pr run demo invoke api bench sandbox clean

help:
	@echo "make run     - the whole gateway locally: moto + offline sandbox + HTTP API on http://127.0.0.1:3000/"
	@echo "make test    - set up everything, then lint, type-check, validate the template, sam build, all tests"
	@echo "make dev     - create .venv (app + test deps), .tools/ (SAM CLI, checkov, openapi-python-client) and node_modules"
	@echo "make deps    - regenerate layers/aisp/requirements.txt from pyproject.toml"
	@echo "make format  - ruff format + autofix"
	@echo "make unit    - the logic tests alone, in seconds (no AWS); make aws - the AWS adapters on moto"
	@echo "make demo    - with make run going: Marc's whole journey over HTTP, printing the numbers"
	@echo "make sandbox - the offline 89C3 bank alone (see sandbox/README.md)"
	@echo "make bench   - benchmarks: cold start (in process and in a Lambda container), warm overhead, pagination,"
	@echo "               refresher throughput, memory, sync"
	@echo "make docker  - Debian's docker.io for sam local: installed if missing, dockerd started if not running"
	@echo "make lambda-image - the python3.13 Lambda base image, built offline (for sam local --invoke-image)"
	@echo "make invoke FN=AccountsFunction EVENT=accounts/list_accounts.json - one event in a Lambda container"
	@echo "make api     - sam local start-api on :3001 (with make run ARGS=\"--docker --docker-network host\")"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "python3.13 not found: install it or pass PYTHON=/path/to/python3.13" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet -r requirements-sam.txt
	@touch $@

CHECKOV_VENV := .tools/checkov

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	@touch $@

# openapi-python-client (the generated-client tests, tests/clients): its own pins, apart from the app venv.
CLIENTS_VENV := .tools/openapi-python-client

$(CLIENTS_VENV)/.installed: requirements-clients.txt
	@test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet -r requirements-clients.txt
	@touch $@

# Node tools, pinned by package-lock.json: Redocly CLI (make lint), openapi-typescript + openapi-fetch + TypeScript
# (tests/clients). No install scripts run; node_modules/ is not committed.
NODE_MODULES := node_modules

$(NODE_MODULES)/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20.19+ (it comes with npm)" >&2; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

dev: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(CLIENTS_VENV)/.installed $(NODE_MODULES)/.installed

# Debian's Chromium for the browser test (Playwright drives it; its own browser download cannot work here).
# Best effort: without root or apt the browser test is skipped and says why.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser test will be skipped" >&2; \
	else echo "no root/apt-get: chromium not installed, the browser test will be skipped" >&2; fi

# Docker for `sam local`: Debian's docker.io, installed (root) when dockerd is missing, dockerd started when nothing
# answers (scripts/docker_engine.py). Best effort like `browser`: when Docker cannot run here it says why, and the
# container tests are skipped with that reason.
DOCKER_ENGINE := $(PYTHON) -m scripts.docker_engine
docker:
	@$(DOCKER_ENGINE) start

# The Lambda python3.13 base image `sam local` runs functions on (AWS's cannot be pulled here): Debian minbase +
# this Python 3.13 + awslambdaric, built offline by scripts/lambda_image.py; nothing is built when an image with the
# same inputs exists. Without Docker it says why and the container tests are skipped.
LAMBDA_IMAGE := aisp-lambda-python:3.13
lambda-image: docker
	@$(PYTHON) -m scripts.lambda_image

deps: $(VENV)/.installed
	$(BIN)/python scripts/export_layer_requirements.py

deps-check: $(VENV)/.installed
	$(BIN)/python scripts/export_layer_requirements.py --check

format: $(VENV)/.installed
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

# The dependency rules: import-linter's contracts in pyproject.toml ([tool.importlinter]).
# The contract: Redocly's recommended rules, every warning an error (redocly.yaml), on docs/openapi.json.
lint: $(VENV)/.installed $(NODE_MODULES)/.installed
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	PYTHONPATH=layers/aisp:. $(BIN)/lint-imports --no-cache
	$(NODE_MODULES)/.bin/redocly lint docs/openapi.json

mypy: $(VENV)/.installed
	$(BIN)/mypy $(MYPY_TARGETS)

# Three template checks: cfn-lint on the SAM source, `sam validate --lint`, and cfn-lint on the SAM translator's
# output (catches a bad Runtime or a !Ref to a missing resource inside SAM policies, which the first two miss).
validate: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --region eu-west-3 --template template.yaml
	$(SAM_VENV)/bin/python -m scripts.translate_template template.yaml .aws-sam/translated.json
	$(SAM_VENV)/bin/cfn-lint .aws-sam/translated.json

# IaC scan: every finding is fixed or skipped in template.yaml with a reason (docs/template.md, Checkov skips).
# --skip-download: no call to the vendor's guideline service (this machine reaches package registries only).
# IAC_TEMPLATE: scan another template the same way (tests/infrastructure/test_iac_scan.py seeds bad ones).
IAC_TEMPLATE ?= template.yaml
iac: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov -f $(IAC_TEMPLATE) --framework cloudformation --compact --quiet --skip-download

# Packaging smoke test: the layer and every function build without a container.
build: $(SAM_VENV)/.installed deps-check
	$(SAM) build --template template.yaml --build-dir .aws-sam/build
	@test -f .aws-sam/build/AispLayer/python/aisp/banks/banks.json
	@test -d .aws-sam/build/AispLayer/python/pydantic
	@test -f .aws-sam/build/AispLayer/python/aisp/__pycache__/__init__.cpython-313.pyc

# The fast tier: the logic over the in-memory stack (tests/use_cases.py) and the memory half of the repository
# contract suite; no AWS, not even moto. `make aws`: the AWS adapters and the DynamoDB half, on moto in process.
unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit tests/contract -m "not dynamodb"

aws: $(VENV)/.installed
	$(BIN)/python -m pytest tests/aws
	$(BIN)/python -m pytest tests/contract -m dynamodb

integration: $(VENV)/.installed
	$(BIN)/python -m pytest tests/integration tests/sandbox

# pytest's own exit code is kept: 5 (no tests collected) fails the build like any other failure.
pytest: $(VENV)/.installed $(SAM_VENV)/.installed $(CLIENTS_VENV)/.installed $(NODE_MODULES)/.installed
	$(BIN)/python -m pytest

# The container suite needs dockerd: started here when not running, and stopped at the end if it was started here.
test: dev browser lint mypy validate iac build
	@$(DOCKER_ENGINE) run -- $(MAKE) --no-print-directory lambda-image pytest

pr: format test

# The offline 89C3 bank alone (https://127.0.0.1:8443 API with mTLS, http://127.0.0.1:8080 login screens).
sandbox: $(VENV)/.installed
	PYTHONPATH=layers/aisp:. $(BIN)/python -m sandbox --admin

# The whole gateway on this machine (moto + offline sandbox + the template's HTTP API); Ctrl-C stops it.
# Ports: API_PORT=3000 MOTO_PORT=5000 SANDBOX_PORT=8443 SANDBOX_SCREENS_PORT=8080, or ARGS="--api-port 3001 ...".
run: $(VENV)/.installed
	$(BIN)/python -m local $(ARGS)

# The quickstart journey headless (HTTP only) against a running `make run`: connect Marc at 13807 through the sandbox's
# screens, consent, balances, every transaction. Another base URL: make demo ARGS="--base-url http://127.0.0.1:3001".
demo: $(VENV)/.installed
	$(BIN)/python -m local.demo $(ARGS)

# `sam local` in Lambda containers against a running `make run ARGS="--docker --docker-network host"`
# (docs/sam-local.md): SAM CLI with the host network honoured (scripts/sam_cli.py) and the offline image. Where
# AWS's image can be pulled: SAM_LOCAL_ARGS="--docker-network host". On Docker's bridge: `make run ARGS=--docker`,
# SAM_LOCAL_ARGS=.
SAM_LOCAL := $(SAM_VENV)/bin/python -m scripts.sam_cli
SAM_LOCAL_ARGS ?= --invoke-image $(LAMBDA_IMAGE) --skip-pull-image --docker-network host
invoke: build lambda-image
	@test -n "$(FN)" -a -n "$(EVENT)" || \
		{ echo "usage: make invoke FN=AccountsFunction EVENT=accounts/list_accounts.json" >&2; exit 2; }
	$(SAM_LOCAL) local invoke $(FN) --event events/$(EVENT) --config-env local $(SAM_LOCAL_ARGS)

api: build lambda-image
	$(SAM_LOCAL) local start-api --config-env local $(SAM_LOCAL_ARGS)

# Benchmarks print tables and write bench/results/<name>.json; never part of `make test` (no timed assertion in tests).
# Cold start (in process, then in Lambda containers: needs Docker, skipped with the reason otherwise), warm overhead
# (handler vs direct bank call), pagination (10,000 transactions), refresher throughput, each function's peak
# memory and the sync (throughput, its memory, the stored feed vs live); each starts its own sandbox and moto processes
# (bench/harness.py). ~17 min on 2 cores (containers: ~7; the sync: ~6).
bench: $(VENV)/.installed build
	$(BIN)/python -m bench.cold_start
	$(DOCKER_ENGINE) run -- $(BIN)/python -m bench.container_init
	$(BIN)/python -m bench.warm
	$(BIN)/python -m bench.pagination
	$(BIN)/python -m bench.refresher
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.sync

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
