# Disclosure Monitor — everything a newcomer needs, from a fresh machine with python3 (>= 3.11) and make.
#   make demo    set up, then replay the irs-ice-2025 scenario and show how early the leak is caught
#   make test    set up, then type-check and run the test suite
#   make bench   set up, then measure replay throughput and memory (bench/replay_bench.py)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_REQUESTS ?= 100000
DEMO_DIR ?= out/demo

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

setup: $(STAMP)
	bash deploy/local/tools.sh

demo: setup
	$(BIN)/dismon simulate --scenario irs-ice-2025 --requests $(DEMO_REQUESTS) --out $(DEMO_DIR)
	DISMON_SUBJECT_KEY=demo-key-not-a-secret-0001 $(BIN)/dismon replay --policy $(DEMO_DIR)/policy.toml \
	  --alerts-out $(DEMO_DIR)/alerts.jsonl --ground-truth $(DEMO_DIR)/truth.json $(DEMO_DIR)/events.jsonl.gz
	@echo "alerts: $(DEMO_DIR)/alerts.jsonl (first one below)"
	@head -n 1 $(DEMO_DIR)/alerts.jsonl

test: setup
	$(BIN)/mypy
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/replay_bench.py

clean:
	rm -rf $(VENV) out bench/.cache
