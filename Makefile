# Two commands set everything up on a fresh machine with Python >= 3.11:
#   make demo    -- create .venv if missing, install normflow, run the main job (into runs/; rerunnable)
#   make test    -- create .venv if missing, install normflow[test], run the test suite
#   make figures -- rerun every experiment at its defaults; rewrite docs/figures/, docs/results/ and
#                   the README's main-job table (slow)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test venv bench clean figures

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
	$(PY) -m normflow ode_vs_adam --optimizer adam --force

OPTIMIZERS := gd sgd sgd_l2 sgdm sgdmw sgdp adam adamw adam_l2 adamp lion
EXPERIMENTS := balance_fit frequency lambda_sweep ntk_drift retrieval schedule specificity

figures: $(VENV)/.installed
	for o in $(OPTIMIZERS); do $(PY) -m normflow ode_vs_adam --optimizer $$o --force --quiet --figures docs/figures \
		--out runs/ode_vs_adam_$$o || exit 1; done
	$(PY) docs/make_tables.py $(foreach o,$(OPTIMIZERS),runs/ode_vs_adam_$(o)/results.json)
	for e in $(EXPERIMENTS); do $(PY) -m normflow $$e --force --quiet --figures docs/figures || exit 1; done
	$(PY) -m normflow validity --force --quiet --figures docs/figures --update-package-data
	$(PY) docs/make_tables.py

test: $(VENV)/.installed-test
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
