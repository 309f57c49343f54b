# Two entry points on a fresh machine: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint docs package install redis-server clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cli,redis,dev,docs]'
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

# The documentation site (docs/, mkdocs.yml) into site/; any warning fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The package as users get it: build the sdist and the wheel (the wheel from the sdist),
# check their metadata, install the wheel with the cli extra into a fresh virtualenv
# outside the checkout, and run the demo there (the in-process fake server, no key).
package: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
	@set -eu; \
	wheel="$$(ls "$(CURDIR)"/dist/*.whl)"; \
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	echo "installing $$(basename "$$wheel")[cli] into a fresh virtualenv in $$tmp"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "$$wheel[cli]"; \
	cd "$$tmp"; \
	clean_env="env -u PYTHONPATH -u DUMPLINGAI_API_KEY -u DUMPLING_API_KEY -u DUMPLINGAI_API_URL"; \
	$$clean_env "$$tmp/venv/bin/python" -c 'import sys, dumpling_async as d; \
	assert d.__file__.startswith(sys.prefix), d.__file__; print("imported from", d.__file__)'; \
	$$clean_env "$$tmp/venv/bin/dumpling-async" demo; \
	test -s "$$tmp/demo-profiles.jsonl"; \
	echo "package ok: the installed wheel ran the demo outside the checkout"

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site dist
