# vaejax: `make test` and `make mnist` each install what they need first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/mnist
CONFIG  ?= experiments/configs/mnist.py
# Extra flags for preparing, e.g. PREPARE_FLAGS=--manual_dir=../shared/data/mnist (offline).
PREPARE_FLAGS ?=

.PHONY: install test mnist prepare lint format docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n auto

# Prepare the dataset if needed (installs the `prepare` extra, i.e. TensorFlow, only then), then train.
prepare: $(STAMP)
	@$(PY) -m experiments.prepare --config=$(CONFIG) || { \
	  echo "Installing the 'prepare' extra (tensorflow-cpu) to download and convert the dataset..."; \
	  if $(PY) -m pip install -q -e '.[prepare]'; then \
	    $(PY) -m experiments.prepare --config=$(CONFIG) --download $(PREPARE_FLAGS); \
	  else $(PY) -m experiments.prepare --config=$(CONFIG); exit 1; fi; }

mnist: prepare
	$(PY) -m experiments.mnist --config=$(CONFIG) --workdir=$(WORKDIR)

# The documentation site, into docs/_build/html (the test suite builds it too, warnings as errors).
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
