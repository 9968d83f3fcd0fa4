# The two commands: `make demo` (the whole story on embedded local AWS) and `make test`.
# Everything installs itself: .venv is built with the Lambda runtime's Python (3.12).
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv lint test demo bench package node_modules checkov clean api chaos browser

all: test

$(STAMP): requirements.txt requirements-dev.txt
	@py=$$(scripts/find-python312.sh) || exit 1; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))'; then \
	  rm -rf $(VENV); echo "creating $(VENV) with $$py"; $$py -m venv $(VENV); fi
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $@

venv: $(STAMP)

# --- packaging (Serverless Framework, offline: no AWS credentials, no AWS calls) ---------
TEMPLATE    := artifacts/cloudformation-template-update-stack.json
PKG_SOURCES := serverless.yml package.json package-lock.json $(wildcard plugins/*.js plugins/*/*.js) requirements.txt \
               $(shell find handlers streamkit consumers reprocess opsapi -type f ! -path '*/__pycache__/*' ! -name '*.pyc' 2>/dev/null)

node_modules: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "error: Node.js (20.19+) and npm are needed for 'serverless package'."; \
	  echo "       install them with your package manager (e.g. 'apt-get install nodejs npm') or from nodejs.org"; exit 1; }
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' || { \
	  echo "error: Node.js $$(node --version) is too old for osls; install Node.js 20.19 or newer"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TEMPLATE): $(STAMP) node_modules/.installed $(PKG_SOURCES) scripts/package.sh scripts/check_readers.py deploy/requirements_closure.py
	PYTHON_BIN=$(abspath $(BIN)/python) scripts/package.sh

package: $(TEMPLATE)

# ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy on the shipped packages;
# settings in pyproject.toml. `make test` (and so CI) runs it first.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's chromium for the operator page's browser tests: installed with apt-get when missing and
# possible (root or password-less sudo); otherwise the reason goes to $(CHROMIUM_NOTE) and those
# tests skip saying it.
CHROMIUM_NOTE := $(VENV)/.chromium-unavailable
browser: venv
	@scripts/ensure-chromium.sh $(CHROMIUM_NOTE)

# checkov in its own venv: it pins boto3/packaging versions the project's .venv cannot share.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements-checkov.txt
	@py=$$(scripts/find-python312.sh) || exit 1; rm -rf $(CHECKOV_VENV); $$py -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV_STAMP)

test: venv lint package browser checkov
	$(BIN)/python -m pytest

# The randomized whole-pipeline fault suite at length (tests/chaos, docs/chaos.md): CHAOS_SCENARIOS
# scenarios (default 2000) from CHAOS_SEED (default: a new one each run, printed in the header).
# `make test` runs 100 of them from seed 1. A failing scenario prints the command that replays it.
chaos: venv package
	CHAOS_SCENARIOS=$${CHAOS_SCENARIOS:-2000} CHAOS_SEED=$${CHAOS_SEED:-$$(date +%s)} $(BIN)/python -m pytest tests/chaos -q

demo: venv package
	$(BIN)/python -m local demo

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache artifacts .serverless node_modules .requirements-cache

# The operator API and page on http://127.0.0.1:5000 (docs/operator-api.md); point it at
# `python -m local run` with the AWS_ENDPOINT_URL that command prints.
api: venv
	$(BIN)/flask --app handlers.api run
