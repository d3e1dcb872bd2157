# `make demo` and `make test` set everything up from nothing; `make setup` is idempotent and fast when done.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser demo test test-all bench clean
setup: $(VENV)/.installed

# OSMesa is the headless OpenGL of a CPU machine; torch comes first so that pip takes the CPU wheel on disk.
$(VENV)/.installed: pyproject.toml
	@if ! ldconfig -p | grep -q libOSMesa; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libosmesa6 >/dev/null; fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q ".[dev,serve]"
	@touch $@

# Debian's chromium for the browser test of `serve` (playwright drives it: no browser is downloaded); not for demo.
browser:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: setup
	$(PY) -m train.demo --out runs/demo

test: setup browser
	$(PY) -m pytest -q

test-all: setup browser
	$(PY) -m pytest -q -m ""

clean:
	rm -rf $(VENV) runs
