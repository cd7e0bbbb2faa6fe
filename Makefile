# Disclosure Monitor — everything a newcomer needs, from a fresh machine with python3 (>= 3.11) and make.
#   make demo    set up, replay the irs-ice-2025 scenario, show how early the leak is caught, write its report
#   make test    set up, then type-check and run the test suite
#   make live    set up, then watch the live daemon catch the leak: broker, worker, Prometheus, Alertmanager
#   make bench   set up, then measure replay throughput and memory (bench/replay_bench.py)
#   make upgrade move the lock file (uv.lock) to the newest releases pyproject.toml allows, then run the suite
#
# Every install comes from uv.lock (exact versions and hashes), so a fresh clone gets the bytes CI tested.
# uv itself is installed from deploy/local/uv-requirements.txt, pinned by hash, into .uv/.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_HOME ?= .uv
UV := $(UV_HOME)/bin/uv
# Never download a Python: the venv uses $(PYTHON); and keep uv's cache inside the project's ignored folders.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
DEMO_REQUESTS ?= 100000
DEMO_DIR ?= out/demo

.PHONY: setup demo live test lint bench peer-bench upgrade clean

$(UV): deploy/local/uv-requirements.txt
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r deploy/local/uv-requirements.txt
	touch $(UV)

# --locked: refuse to install if uv.lock no longer matches pyproject.toml (run `make upgrade` or `uv lock`).
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --quiet --locked --all-extras --python $(PYTHON)
	touch $(STAMP)

setup: $(STAMP)
	bash deploy/local/tools.sh

demo: setup
	$(BIN)/dismon simulate --scenario irs-ice-2025 --requests $(DEMO_REQUESTS) --out $(DEMO_DIR)
	rm -rf $(DEMO_DIR)/ledger
	test -f $(DEMO_DIR)/ledger.key || $(BIN)/dismon ledger keygen --private $(DEMO_DIR)/ledger.key \
	  --public $(DEMO_DIR)/ledger.pub
	DISMON_SUBJECT_KEY=demo-key-not-a-secret-0001 $(BIN)/dismon replay --policy $(DEMO_DIR)/policy.toml \
	  --alerts-out $(DEMO_DIR)/alerts.jsonl --summary-out $(DEMO_DIR)/summary.json \
	  --ledger $(DEMO_DIR)/ledger --ledger-key $(DEMO_DIR)/ledger.key \
	  --ground-truth $(DEMO_DIR)/truth.json $(DEMO_DIR)/events.jsonl.gz
	$(BIN)/dismon ledger verify $(DEMO_DIR)/ledger --public-key $(DEMO_DIR)/ledger.pub
	$(BIN)/dismon report --alerts $(DEMO_DIR)/alerts.jsonl --summary $(DEMO_DIR)/summary.json \
	  --truth $(DEMO_DIR)/truth.json --out $(DEMO_DIR)/report.html
	@echo "alerts: $(DEMO_DIR)/alerts.jsonl (first one below)"
	@head -n 1 $(DEMO_DIR)/alerts.jsonl
	@echo "audit report: $(abspath $(DEMO_DIR))/report.html"

lint: setup
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/lint-imports

live: setup
	$(BIN)/python deploy/local/live.py

test: lint
	$(BIN)/mypy
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/replay_bench.py

peer-bench: setup
	$(UV) sync --quiet --locked --all-extras --group peer --python $(PYTHON)
	$(BIN)/python bench/peer_bench.py

upgrade: $(UV)
	$(UV) lock --upgrade --python $(PYTHON)
	$(UV) sync --quiet --locked --all-extras --python $(PYTHON)
	touch $(STAMP)
	$(MAKE) test

clean:
	rm -rf $(VENV) $(UV_HOME) out bench/.cache
