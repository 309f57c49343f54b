# Two entry points on a fresh machine: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install redis-server clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cli,redis,dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/dumpling-async demo

redis-server:
	./scripts/ensure-redis-server

test: install redis-server
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict dumpling_async

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
