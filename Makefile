# Developer entry points. `make demo` and `make test` are the README's quick start:
# both create .venv and install tierkit, its plugins and the tools on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DIST   ?= dist

.PHONY: install demo test lint docs bench reliability dist clean

$(STAMP): pyproject.toml plugins/tierkit-session/pyproject.toml plugins/tierkit-redis/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,docs,bench]' \
		-e plugins/tierkit-session -e 'plugins/tierkit-redis[hiredis]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tierkit demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict plugins/tierkit-session/tierkit_session plugins/tierkit-redis/tierkit_redis

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Wheels of tierkit, of each plugin, and of everything they depend on (for this platform and
# Python), so that `pip install --no-index --find-links dist "tierkit[redis,session]"` works
# on a machine without index access.  Building needs the index once (setuptools, dependencies).
dist: $(STAMP)
	rm -rf $(DIST)
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir $(DIST) . plugins/tierkit-session plugins/tierkit-redis
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(DIST) --find-links $(DIST) 'tierkit[redis,session]'
	rm -rf build plugins/*/build  # setuptools' scratch space in the source tree

# Run the fault suite (tests/faults) and render its results into docs/reliability.md.
reliability: $(STAMP)
	$(BIN)/python -m pytest tests/faults -q --ignore=tests/faults/test_reliability_page.py
	$(BIN)/python -m tests.faults.report

clean:
	rm -rf $(VENV) site dist .mypy_cache .ruff_cache .hypothesis
