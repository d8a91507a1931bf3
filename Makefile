# Two commands do all set-up on a fresh machine:  make demo  and  make test.
# TORCH pins the CPU build that this project's machines keep on disk; on a Linux box with an
# NVIDIA GPU, `make demo TORCH=torch` takes PyPI's default (CUDA) build instead.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aelab-installed

.PHONY: demo test data lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

data: $(STAMP)
	$(VENV)/bin/aelab data mnist

demo: $(STAMP)
	$(VENV)/bin/aelab demo

test: data
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
