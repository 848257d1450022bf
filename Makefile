# Keepwell developer commands. `make run` and `make test` work on a fresh clone
# with nothing but python3 (3.11) and pip.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test test-postgres lint format schema bench bench-rest lock clean k8s-validate test-chaos test-chaos-postgres demo

$(VENV)/.installed: requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Keepwell needs Python 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --requirement requirements.lock
	@touch $@

install: $(VENV)/.installed

run: install ## the whole platform on embedded defaults (Ctrl-C stops it all)
	$(PY) -m tools.devstack

demo: install ## a simulated retailer through a running `make run`; prints the dashboard URL
	$(PY) -m tools.demo

test: install ## the whole suite: real broker, SQLite, SMTP sink
	$(PY) -m pytest -q

test-postgres: install ## the database-backed tests again, on PostgreSQL
	KEEPWELL_TEST_DB=postgres $(PY) -m pytest -q -m "(db or e2e) and not chaos"

test-chaos: install ## fault injection, 10,000 purchases (CHAOS_PURCHASES=1000 for a quick run)
	$(PY) -m pytest -q -s -m chaos tests/chaos

test-chaos-postgres: install ## the fault injection again, each service on PostgreSQL
	KEEPWELL_TEST_DB=postgres $(PY) -m pytest -q -s -m chaos tests/chaos

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

k8s-validate: install ## validate deploy/k8s against Kubernetes and CRD schemas, and against the code
	$(PY) -m pytest -q tests/deploy

schema: install ## regenerate the published event schema from the models
	$(PY) -m shared.events.schema > docs/events.schema.json

bench: install ## pipeline + REST benchmarks on SQLite and PostgreSQL, one summary table (needs wrk)
	$(PY) -m bench.all

bench-rest: install ## REST p50/p99 with wrk, server and wrk on separate cores (apt-get install wrk)
	$(PY) -m bench.rest

lock: ## re-pin dependencies from the current virtualenv
	(echo "# Pinned runtime + development dependencies (Python 3.11). Regenerate with \`make lock\`."; \
	 $(VENV)/bin/pip freeze --exclude-editable) > requirements.lock

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
