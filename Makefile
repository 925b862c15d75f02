# skitflow developer tasks. `make example` and `make test` are the two set-up commands in README.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE  ?= ghcr.io/skitflow/skitflow:$(VERSION)
PLUGINS ?=

.PHONY: setup example test test-fast services lint compile bench image push-image schema goldens clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,serve]"
	@# bytecode, as a wheel install has it (PYTHONDONTWRITEBYTECODE would leave every task to recompile)
	$(BIN)/python -m compileall -q skitflow
	touch $@

## Run the shipped example end to end on this machine (no cluster, no Docker).
example: setup
	$(BIN)/skitflow run examples/tickets.yaml

## Install and start the real test servers (S3, PostgreSQL, Label Studio), then run every test.
test: setup services
	$(BIN)/python -m pytest

## Unit and compile tests only (no servers).
test-fast: setup
	$(BIN)/python -m pytest -m "not services and not slow"

services:
	scripts/install-services.sh

lint: setup
	$(BIN)/ruff check skitflow tests benchmarks examples
	$(BIN)/mypy

## Rebuild build/ from recipes/ (for `skitflow run`: the shipped recipes read local files;
## `skitflow compile recipes` without --target local refuses them, as submit does).
compile: setup
	$(BIN)/skitflow compile recipes -o build --target local

schema: setup
	$(BIN)/skitflow schema -o schemas/recipe.schema.json

## Regenerate golden files (review the diff before committing).
goldens: setup
	SKITFLOW_UPDATE_GOLDENS=1 $(BIN)/python -m pytest tests/test_goldens.py -q

bench: setup
	$(BIN)/python benchmarks/run.py

## The runtime image (needs Docker). PLUGINS="pkg ..." adds plugin packages; then set IMAGE too.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg PLUGINS="$(PLUGINS)" -t $(IMAGE) .

## Push it (after `docker login` to the registry in IMAGE).
push-image: image
	docker push $(IMAGE)

clean:
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache
