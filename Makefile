# Two commands set everything up on a fresh machine with Python >= 3.11:
#   make demo   -- create .venv if missing, install normflow, run the main job
#   make test   -- create .venv if missing, install normflow[test], run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

demo: $(VENV)/.installed
	$(PY) sims/ode_vs_adam.py --optimizer adam

test: $(VENV)/.installed-test
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
