# Set-up and common tasks. Every target creates .venv and installs the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FIXTURES ?= ../shared/parity/reference_small_f64.npz ../shared/parity/reference_small.npz \
            ../shared/parity/cyclegan_small_f64.npz ../shared/parity/pix2pix_small_f64.npz

.PHONY: install demo test test-packaging test-all parity bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its test dependencies

DEMO_DIR ?= runs/demo
DEMO_STEPS ?= 3000

demo: $(STAMP)  ## train InstaGAN on the learnable shapes task (discs <-> squares) for a few minutes, then evaluate it
	$(BIN)/instagan train --config discs2squares --workdir $(DEMO_DIR) --steps $(DEMO_STEPS)
	$(BIN)/instagan eval --workdir $(DEMO_DIR) --num 200 --no-progress

TEST_WORKERS ?= 2  # pytest-xdist processes (one file per process at a time); 0 runs in this process

test: $(STAMP)  ## the default test suite (slow tests deselected), in TEST_WORKERS processes
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-packaging: $(STAMP)  ## the wheel in a fresh venv, the notebook, the launch scripts (minutes; CI runs it)
	$(BIN)/python -m pytest -q -m packaging

test-all: $(STAMP)  ## every test, slow ones included
	$(BIN)/python -m pytest -q -m "" -n $(TEST_WORKERS) --dist loadfile

parity: $(STAMP)  ## compare with the PyTorch reference fixtures (float64: exact; float32: what it settles)
	for fixture in $(FIXTURES); do $(BIN)/instagan parity $$fixture || exit 1; done

bench: $(STAMP)  ## layer and network speed tables (experiments/bench_layers.py)
	$(BIN)/python experiments/bench_layers.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache runs
