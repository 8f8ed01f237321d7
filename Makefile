# `make serve` and `make test` work on a fresh machine that has only Python 3.11: both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install serve test test-fast bench train-tiny eval-tiny clean

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

# Retrain the embedded model from its generated corpus (seeded): 1,800 steps of 3,072 tokens (34 minutes on this
# project's 2-core machine, 2,400-2,900 tokens/s; the script stops itself at 45 minutes). CI never runs it.
train-tiny: $(STAMP)
	$(BIN)/python -m scripts.tiny_model.train --out engine/embedded/glm-4.5-tiny

# Evaluate the embedded model through the engine on its held-out conversations.
eval-tiny: $(STAMP)
	$(BIN)/python -m scripts.tiny_model.evaluate

# All benchmarks at CPU size (~15 min on 2 cores): offline vs transformers (static and continuous batching), MTP
# on/off, a serving sweep (concurrency 1,4,16,32) and the server-overhead ratio; JSON, PNG plots and summary.md
# go to results/ (BENCH_OUT=...).
BENCH_OUT ?= results
bench: $(STAMP)
	$(BIN)/python -m loadtests.bench_suite --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) .pytest_cache
