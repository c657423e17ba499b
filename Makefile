# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing; `demo` installs the light core only, `test` everything.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Tests never reach a model hub: without this, each weight lookup retries for ~30 s.
export HF_HUB_OFFLINE := 1

# Debian packages the tests need: BRISQUE's model files (opencv-data) and the browser the review app's
# end-to-end test drives through Playwright (never a downloaded one).
APT_PACKAGES := opencv-data chromium

.PHONY: demo test test-all lint bench system-deps schema clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip

$(VENV)/.core-installed: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

# torch and torchvision pinned to the pair that installs from this machine's disk (see ENVIRONMENT.md).
# pyiqa pulls in opencv-python, whose cv2 would shadow the contrib build ggt needs (cv2.quality for
# BRISQUE, cv2.ximgproc for guided filtering): both wheels write the same cv2/ files, so remove the plain
# ones and put the contrib build back.
$(VENV)/.all-installed: pyproject.toml | $(PY)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e '.[dev,iqa,diffusers,train,finetune,ray]'
	$(PY) -m pip uninstall -q -y opencv-python opencv-python-headless
	$(PIP) --force-reinstall --no-deps "$$($(PY) -m pip list --format=freeze 2>/dev/null | grep -i '^opencv-contrib-python-headless==')"
	$(PY) -c "import cv2; cv2.quality.QualityBRISQUE_compute; cv2.ximgproc.guidedFilter"
	touch $@ $(VENV)/.core-installed

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

demo: $(VENV)/.core-installed
	$(VENV)/bin/ggt demo --out demo-run

lint: $(VENV)/.all-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The default run leaves out tests marked slow; `make test-all` runs them too.
test: lint system-deps
	$(VENV)/bin/pytest -q -m "not slow"

test-all: lint system-deps
	$(VENV)/bin/pytest -q

bench: $(VENV)/.all-installed
	PYTHONPATH=benchmarks $(PY) benchmarks/bench_ingest.py

schema: $(VENV)/.core-installed
	$(VENV)/bin/ggt config schema --out docs/config.schema.json

clean:
	rm -rf $(VENV) demo-run .pytest_cache .ruff_cache
