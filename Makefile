# Quick start: `make bench` (the main job) and `make test` (the whole suite).
# Each creates .venv and installs what it needs; only python3 and gcc required.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: bench test install asv sanitize clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*) $(wildcard fastmle/*.py fastmle/*/*.py)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel >/dev/null
	$(PIP) install ".[test,bench]"
	# Numba's one-time compilation (about 3 minutes on 2 cores) here, so
	# that the first `python -m fastmle bench` times the kernels alone
	cd /tmp && $(abspath $(PY)) -m fastmle compile
	touch $@

install: $(VENV)/.installed

# Run from outside the source tree so the installed package (with its
# compiled C extension) is the one imported.
bench: install
	cd /tmp && $(abspath $(PY)) -m fastmle info && $(abspath $(PY)) -m fastmle bench

test: install
	cd /tmp && $(abspath $(PY)) -m fastmle info
	$(VENV)/bin/pytest -p no:cacheprovider --import-mode=importlib -q --durations=10 \
		--pyargs fastmle tests bench

asv: install
	$(VENV)/bin/asv machine --yes
	$(VENV)/bin/asv run --python=same --quick --show-stderr

# The C extension built with AddressSanitizer and UndefinedBehaviorSanitizer
# (any report aborts), in its own environment, and the whole suite run
# against it. Leak detection is off: CPython itself does not free everything.
SAN_VENV := .venv-sanitize
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g
SAN_RUN = LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize:
	$(PYTHON) -m venv $(SAN_VENV)
	$(SAN_VENV)/bin/python -m pip install --upgrade pip setuptools wheel >/dev/null
	$(SAN_VENV)/bin/python -m pip install ".[test]"
	rm -rf build  # setuptools would reuse object files compiled without the sanitizers
	FASTMLE_CFLAGS="$(SAN_FLAGS)" $(SAN_VENV)/bin/python -m pip install --force-reinstall --no-deps .
	rm -rf build  # ... and the next normal build would reuse the sanitized ones
	nm -D $(SAN_VENV)/lib/python3*/site-packages/fastmle/_cext*.so | grep -q __asan_report
	cd /tmp && $(SAN_RUN) $(abspath $(SAN_VENV))/bin/python -m fastmle info | grep "c: available"
	$(SAN_RUN) $(SAN_VENV)/bin/pytest -p no:cacheprovider --import-mode=importlib -q -x \
		--pyargs fastmle tests bench

clean:
	rm -rf $(VENV) $(SAN_VENV) build *.egg-info .asv .benchmarks
