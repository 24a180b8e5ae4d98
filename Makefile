# Two entry points for a newcomer: `make demo` and `make test`.
# Both create the Python environment in .venv from nothing (and reuse it afterwards).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

# `make test` also runs the whole suite in one environment per constraints file Testing/environments/NAME.txt,
# built from nothing in .venv-NAME on the Python named here: the packages 3D Slicer 5.10 bundles (the oldest
# release the extension supports), and the oldest releases the code supports. .venv itself has the newest
# releases, as Slicer 5.12 bundles them (pydicom 3).
ENVIRONMENTS := slicer-5.10 oldest
PYTHON_slicer-5.10 ?= 3.12
PYTHON_oldest      ?= 3.10
# A Python X.Y interpreter: pyenv's if it has one (its shims on PATH need a selected version), else PATH's.
find-python = $(or $(lastword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1))),$(shell command -v python$(1)))

.PHONY: demo test test-default test-environments lint venv system-tools bench clean
.SECONDARY: $(ENVIRONMENTS:%=.venv-%/.installed-stamp)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,lint,compare,codecs]"
	touch $(STAMP)

# The constraints pin what the application bundles: a dependency that needs a newer release fails to
# install rather than upgrading it (as it must never be upgraded inside Slicer).
.venv-%/.installed-stamp: pyproject.toml Testing/environments/%.txt
	@python="$(call find-python,$(PYTHON_$*))"; \
	  test -n "$$python" && "$$python" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$(PYTHON_$*)'.split('.'))))" || \
	  { echo "The '$*' test environment needs Python $(PYTHON_$*): install it, e.g. 'pyenv install $(PYTHON_$*)'." >&2; exit 1; }; \
	  set -x; test -x .venv-$*/bin/python || "$$python" -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -c Testing/environments/$*.txt -e ".[test]"
	.venv-$*/bin/python -m pip check
	touch $@

# DICOM validation (dciodvfy from dicom3tools) and PDF rasterisation (pdftoppm) used by the tests.
system-tools:
	@command -v dciodvfy >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools poppler-utils >/dev/null; }

# The demo's output is generated data only; each run starts from an empty folder.
demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/mibgdose demo --out $(DEMO_OUT)

test: lint test-default test-environments

# The environments' suites run side by side, one core each (their output shown as each finishes), each
# with its own temporary folder and no shared pytest cache.
TEST_TMP ?= /tmp/mibg-dosimetry-tests
test-environments: $(ENVIRONMENTS:%=.venv-%/.installed-stamp) system-tools
	@echo "Running the suite in the environments $(ENVIRONMENTS) side by side (output when each has finished)"
	$(MAKE) --no-print-directory --output-sync=target -j$(words $(ENVIRONMENTS)) $(ENVIRONMENTS:%=test-%)

# Undefined names, unused imports and the other pyflakes checks over every Python file (pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .

test-default: $(STAMP) system-tools
	$(PY) -m pytest -q

# The realistic-phantom and z-score tiers check the analysis, not the packages: they run in .venv only.
test-%: .venv-%/.installed-stamp system-tools
	mkdir -p $(TEST_TMP)
	.venv-$*/bin/python -m pytest -q -m "not realistic and not zscore" -p no:cacheprovider --basetemp=$(TEST_TMP)/$*

bench: $(STAMP)
	$(PY) bench/run --json

clean:
	rm -rf $(VENV) $(ENVIRONMENTS:%=.venv-%) $(DEMO_OUT)
