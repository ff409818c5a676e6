# citerag: set-up, demo and tests. Every install step lives in scripts/setup.sh.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test test-fast bench clean

setup:
	scripts/setup.sh

## Test-only system packages (chromium + chromedriver for the web page's browser test).
setup-test:
	scripts/setup-test.sh

## Set up, index the bundled sample corpus and answer a question with the embedded models.
demo: setup
	$(VENV)/bin/citerag demo

## Set up and run the whole test suite (what CI runs).
test: setup setup-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

## Unit and component tests without the real SmolLM2 end-to-end runs.
test-fast: setup setup-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/bench_ask.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
