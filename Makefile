# The two commands of the README. Each creates or updates .venv itself.
VENV ?= .venv
BIN := $(VENV)/bin
# Stage commands say `python`: the venv's, so `make repro` needs no activated environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test lint
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
