# Two commands do all set-up on a fresh machine:  make demo  and  make test.
# TORCH is the torch requirement. On Linux, PyPI serves `torch==2.13.0` as the CUDA build
# (several GB); this project's machines have the CPU wheel configured locally, so the pin
# takes it. Elsewhere, for the CPU build: `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu`
# (PyTorch's own index of CPU wheels); `make demo TORCH=torch` takes PyPI's newest default build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aelab-installed
# The repository keeps its datasets in ./data (aelab's default at a checkout's root; an
# installed aelab elsewhere uses a per-user folder: docs/data.md), said here once more for
# every target; an AELAB_DATA_DIR already set in the environment still wins.
AELAB_DATA_DIR ?= $(CURDIR)/data
export AELAB_DATA_DIR

.PHONY: demo test data system-deps results lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

data: $(STAMP)
	$(VENV)/bin/aelab data mnist

demo: $(STAMP)
	$(VENV)/bin/aelab demo

# Debian packages the tests use: Chromium for the browser tests, and the official
# Fashion-MNIST files. Installed when running as root with apt (as CI does); elsewhere
# the tests that need them skip and say why.
SYSTEM_PACKAGES := chromium dataset-fashion-mnist
system-deps:
	@if [ -x /usr/bin/chromium ] && [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "note: install $(SYSTEM_PACKAGES) (Debian) for the browser and Fashion-MNIST tests"; fi

test: data system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)

# Retrains the results table's presets (reusing finished runs) and writes docs/RESULTS.md.
results: $(STAMP)
	$(VENV)/bin/aelab results
