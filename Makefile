# citerag: set-up, demo and tests. Every install step lives in scripts/setup.sh.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test test-fast lint lint-imports bench clean

setup:
	scripts/setup.sh

## Test-only system packages (chromium + chromedriver for the web page's browser test).
setup-test:
	scripts/setup-test.sh

## Set up, index the bundled sample corpus and answer a question with the embedded models.
demo: setup
	$(VENV)/bin/citerag demo

## Set up, lint, check the import layers and run the whole test suite (what CI runs). The
## browser test fails here (instead of skipping) when Chromium is missing.
test: setup setup-test lint lint-imports
	CITERAG_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q

## Unit and component tests without the real SmolLM2 end-to-end runs.
test-fast: setup setup-test lint lint-imports
	CITERAG_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

## Ruff's lint rules and formatting ([tool.ruff] in pyproject.toml): the check only reports,
## `ruff format .` and `ruff check --fix .` repair.
lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## The layers of pyproject.toml's [tool.importlinter]: imports point down only. The packages
## must be importable from this checkout, hence PYTHONPATH.
lint-imports:
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports

bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/bench_ask.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
