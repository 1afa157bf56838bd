# Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-cluster test lint bench bench-cluster bench-analytics bench-pool install clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) chromium
	$(BIN)/arenahub demo

# The same behind HAProxy: PostgreSQL, Redis and three platform instances (the demo installs Debian's
# haproxy, redis-server and postgresql when they are missing and it runs as root).
demo-cluster: $(STAMP) chromium
	$(BIN)/arenahub demo --instances 3

# The demo's browser tab: Debian's chromium (Playwright's own browser download does not work offline).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the demo needs chromium: sudo apt-get install chromium (or run: .venv/bin/arenahub demo --upstream local)"; exit 1; fi; }

# Three workers by default: CI has 2 cores, but most end-to-end tests wait on servers and sockets, and
# three finish in about 12 minutes where two took 15. Whole files go to one worker, so a module's shared
# programs start once. PYTEST_WORKERS=0 runs everything in this process. The 25 slowest tests are listed
# at the end (the suite's time is watched).
PYTEST_WORKERS ?= 3
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

# ruff and mypy (settings in pyproject.toml; strict on protocol/ and the pure cores); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check arenahub tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The cluster arm: a client on another instance vs the same one (needs redis-server and ARENAHUB_BENCH_PG_URL).
bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster.py $(BENCH_ARGS)

# The dashboard on 1,000,000 seeded records and their ledger: its storage queries, then every API call
# each page makes, over HTTP against a platform started on that database; then its client list with
# 1,000 clients. SQLite, and PostgreSQL with ARENAHUB_TEST_PG_URL set (about 7 minutes for both).
bench-analytics: $(STAMP)
	$(BIN)/python bench/analytics.py $(BENCH_ARGS)
	$(BIN)/python bench/clients.py $(BENCH_CLIENTS_ARGS)

# Routing: every strategy and the circuit breaker over 200 simulated clients, in one process.
bench-pool: $(STAMP)
	$(BIN)/python bench/pool.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .arenahub build *.egg-info
