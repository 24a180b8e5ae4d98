# Two entry points for a newcomer: `make demo` and `make test`.
# Both create the Python environment in .venv from nothing (and reuse it afterwards).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: demo test venv system-tools bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# DICOM validation (dciodvfy from dicom3tools) and PDF rasterisation (pdftoppm) used by the tests.
system-tools:
	@command -v dciodvfy >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools poppler-utils >/dev/null; }

# The demo's output is generated data only; each run starts from an empty folder.
demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/mibgdose demo --out $(DEMO_OUT)

test: $(STAMP) system-tools
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run --json

clean:
	rm -rf $(VENV) $(DEMO_OUT)
