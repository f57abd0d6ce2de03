# Developer entry points. `make demo` and `make test` are the README's quick start:
# both create .venv and install tierkit, its plugins and the tools on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs bench reliability clean

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

# Run the fault suite (tests/faults) and render its results into docs/reliability.md.
reliability: $(STAMP)
	$(BIN)/python -m pytest tests/faults -q --ignore=tests/faults/test_reliability_page.py
	$(BIN)/python -m tests.faults.report

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .hypothesis
