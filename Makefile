# The two commands: `make demo` (the whole story on embedded local AWS) and `make test`.
# Everything installs itself: .venv is built with the Lambda runtime's Python (3.12).
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test demo bench clean

all: test

$(STAMP): requirements.txt requirements-dev.txt
	@py=$$(scripts/find-python312.sh) || exit 1; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))'; then \
	  rm -rf $(VENV); echo "creating $(VENV) with $$py"; $$py -m venv $(VENV); fi
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $@

venv: $(STAMP)

test: venv
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/python -m local demo

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis artifacts .serverless node_modules
