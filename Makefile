# Quick start: `make bench` (the main job) and `make test` (the whole suite).
# Each creates .venv and installs what it needs; only python3 and gcc required.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: bench test install asv clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*) $(wildcard fastmle/*.py fastmle/*/*.py)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel >/dev/null
	$(PIP) install ".[test,bench]"
	touch $@

install: $(VENV)/.installed

# Run from outside the source tree so the installed package (with its
# compiled C extension) is the one imported.
bench: install
	cd /tmp && $(abspath $(PY)) -m fastmle info && $(abspath $(PY)) -m fastmle bench

test: install
	cd /tmp && $(abspath $(PY)) -m fastmle info
	$(VENV)/bin/pytest -p no:cacheprovider --import-mode=importlib -q \
		--pyargs fastmle tests bench

asv: install
	$(VENV)/bin/asv machine --yes
	$(VENV)/bin/asv run --python=same --quick --show-stderr

clean:
	rm -rf $(VENV) build *.egg-info .asv .benchmarks
