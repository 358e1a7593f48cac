# The two commands of the README. Each creates or updates .venv itself.
VENV ?= .venv
BIN := $(VENV)/bin
# Stage commands say `python`: the venv's, so `make repro` needs no activated environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test lint study
setup:
	@bash scripts/setup_venv.sh

repro: setup
	dvc repro

test: setup
	$(BIN)/ruff check prunetune stages tests
	$(BIN)/ruff format --check prunetune stages tests
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format prunetune stages tests
	$(BIN)/ruff check --fix prunetune stages tests

# The reference study on a GPU (see configs/llama-3.2-1b.yaml) as a DVC experiment; params.yaml is not touched.
CONFIG ?= configs/llama-3.2-1b.yaml
study: setup
	prunetune study $(CONFIG)
