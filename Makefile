# Two set-up commands (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch: a plain `pip install torch` on Linux pulls a multi-GB CUDA build.
# Override for a GPU machine: make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0

.PHONY: demo test lint install clean

$(BIN)/ecgbio: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/ecgbio

demo: install
	$(BIN)/ecgbio demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check ecgbio tests experiments benchmarks

clean:
	rm -rf $(VENV) ecgbio-demo .pytest_cache
