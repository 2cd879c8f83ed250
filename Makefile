# Clicktrail: `make run` serves the demo, `make test` runs the suite. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
PYTEST_ARGS ?= -q -n 2
STAMP := $(VENV)/.installed

.PHONY: install run test test-sqlite test-postgres test-accessibility lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: export PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
# The demo program sends shoppers to the demo shop on this plain-http loopback address (README: Demo shop).
run: export ALLOW_HTTP_LOOPBACK_DESTINATIONS ?= 1
run: $(STAMP)
	$(FLASK) db upgrade
	$(FLASK) seed-demo --if-empty
	@echo ""
	@echo "Clicktrail is at http://$(HOST):$(PORT)/  (stop with Ctrl-C)"
	$(VENV)/bin/granian --interface wsgi --host $(HOST) --port $(PORT) --workers $(WORKERS) --blocking-threads 8 --no-ws wsgi:app

test: test-sqlite test-postgres

test-sqlite: $(STAMP)
	env -u CLICKTRAIL_TEST_DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

# Runs the suite again on PostgreSQL: the server in CLICKTRAIL_TEST_DATABASE_URL, or a
# throwaway cluster that .ci/postgres starts. REQUIRE_POSTGRES=1 makes a missing server fatal.
test-postgres: $(STAMP)
	@url="$${CLICKTRAIL_TEST_DATABASE_URL:-$$(bash .ci/postgres start)}"; \
	if [ -z "$$url" ]; then \
	  if [ -n "$$REQUIRE_POSTGRES" ]; then echo "PostgreSQL pass required, but no server could be started" >&2; exit 1; fi; \
	  echo "PostgreSQL pass skipped: no PostgreSQL server (set CLICKTRAIL_TEST_DATABASE_URL)"; exit 0; \
	fi; \
	echo "PostgreSQL pass on $$url"; \
	CLICKTRAIL_TEST_DATABASE_URL="$$url" $(PY) -m pytest $(PYTEST_ARGS)

# axe-core on every page of the browser journeys at 1280 and 390 px (docs/design.md); fetches the pinned axe-core first.
test-accessibility: $(STAMP)
	$(PY) -m tests.browser.axe
	env -u CLICKTRAIL_TEST_DATABASE_URL $(PY) -m pytest -q tests/browser/test_accessibility.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Benchmarks on SQLite and on a PostgreSQL cluster of their own (docs/benchmarks.md). A first run seeds
# cached worlds under bench/.cache/ for long; BENCH_SKIP_50M=1 leaves out the 50M-click one, BENCH_QUICK=1
# tries the scripts on small worlds, BENCH_ARGS="--only redirector,ingest" picks benches.
bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
