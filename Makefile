# Releasegate. `make run` starts the app with demo data; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint worker screenshots clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

run: $(BIN)/activate
	$(BIN)/python scripts/run_local.py

test: $(BIN)/activate
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/activate
	$(BIN)/ruff check .

screenshots: $(BIN)/activate
	$(BIN)/python scripts/screenshots.py

worker: $(BIN)/activate
	$(BIN)/python -m worker

clean:
	rm -rf $(VENV) instance .pytest_cache
