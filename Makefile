# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing; `demo` installs the light core only, `test` everything.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-all lint bench schema clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip

$(VENV)/.core-installed: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.all-installed: pyproject.toml | $(PY)
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.core-installed

demo: $(VENV)/.core-installed
	$(VENV)/bin/ggt demo --out demo-run

lint: $(VENV)/.all-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The default run leaves out tests marked slow; `make test-all` runs them too.
test: lint
	$(VENV)/bin/pytest -q -m "not slow"

test-all: lint
	$(VENV)/bin/pytest -q

bench: $(VENV)/.all-installed
	$(PY) benchmarks/bench_ingest.py

schema: $(VENV)/.core-installed
	$(VENV)/bin/ggt config schema --out docs/config.schema.json

clean:
	rm -rf $(VENV) demo-run .pytest_cache .ruff_cache
