# Releasegate. `make run` starts the app with demo data; `make test` runs the tests;
# `make bench` measures it against the machine's own baselines (bench/README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint worker screenshots bench clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

run: $(BIN)/activate
	$(BIN)/python scripts/run_local.py

test: $(BIN)/activate chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests drive Debian's chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium', then 'make test' again."; exit 1; fi; }

lint: $(BIN)/activate
	$(BIN)/ruff check .

screenshots: $(BIN)/activate chromium
	$(BIN)/python scripts/screenshots.py

worker: $(BIN)/activate
	$(BIN)/python -m worker

# wrk comes from Debian; the profilers only from bench/requirements.txt, never the app's requirements.
$(VENV)/.bench-installed: $(BIN)/activate bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is missing: install it (Debian: sudo apt-get install wrk) and run make bench again."; exit 2; }
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache
