# Two entry points (see README): `make demo` and `make test`. Each creates/updates .venv itself.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH_WHEEL := $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl)
CONFIG ?= configs/demo.yaml
OUT ?= runs/demo

.PHONY: env demo run test test-fast lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstalls only when pyproject.toml changes. torch comes from the local CPU wheel when present
# (a plain `torch` from PyPI would pull gigabytes of CUDA packages).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9 || $(BIN)/python -m pip install -q uv
	$(if $(TORCH_WHEEL),$(BIN)/uv pip install -q --python $(BIN)/python "$(TORCH_WHEEL)",$(BIN)/uv pip install -q --python $(BIN)/python torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev]"
	touch $@

env: $(VENV)/.installed

demo: env
	$(BIN)/python -m pipeline.run --config $(CONFIG) --out $(OUT)

run: demo

# test files run on TEST_WORKERS processes (pytest-xdist; each file's tests stay on one worker, so a file's
# shared fixtures are built once); TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test: env
	$(PYTEST)

# the suite without the end-to-end runs marked slow (minutes each)
test-fast: env
	$(PYTEST) -m "not slow"

# ruff with the rules in pyproject.toml ([tool.ruff.lint]); CI requires zero findings
lint: env
	$(BIN)/ruff check .

bench: env
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev,bench]"
	@echo "benchmarks live in bench/: e.g. $(BIN)/python bench/bench_benchmarks.py"

clean:
	rm -rf $(VENV) runs
