# `make serve` and `make test` work on a fresh machine that has only Python 3.11: both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install serve test test-all test-gpu bench train-tiny clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Runs the OpenAI-compatible server (flags: SERVE_ARGS="--port 8001 ...").
serve: $(STAMP)
	$(BIN)/glm-serve $(SERVE_ARGS)

# The default suite: everything CI runs, slow tests included, in well under 15 minutes on 2 cores.
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# Only the fast tests (skips @pytest.mark.slow) for quick local iteration.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
