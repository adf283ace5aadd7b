# payengine — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: What `make demo` needs (the runtime alone); STAMP adds the test tools.
RUN_STAMP := $(VENV)/.installed-run
#: uv installs in seconds what pip takes minutes for (a fresh clone's `make demo` is mostly
#: this); pip stays the fallback when uv cannot be had.
PIP_INSTALL = $(BIN)/python -m uv pip install --quiet --python $(BIN)/python

.PHONY: demo test lint bench clean venv test-store-service mutation test-reliability chromium bench-pg

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv \
	  || echo "uv is not available: installing with pip (slower)"

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m uv --version >/dev/null 2>&1 && $(PIP_INSTALL) -e . \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m uv --version >/dev/null 2>&1 && $(PIP_INSTALL) -e '.[test]' \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(RUN_STAMP)
	$(BIN)/payengine demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# The browser tests (tests/browser) drive Debian's chromium through Playwright's Python package
# (never a browser Playwright downloads). Installed quietly when missing; if that is impossible
# (not root, no apt), say so: the browser tests then fail, loudly, naming the package.
CHROMIUM ?= /usr/bin/chromium

chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests (tests/browser)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    >/dev/null 2>&1 || echo "WARNING: could not install chromium: the browser tests will fail"; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check engine actors
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# Full payments on PostgreSQL beside the memory store, the pgbench ceiling of the same
# statements, and the ledger alone (docs/benchmarks.md "PostgreSQL"); the embedded server of
# PAYENGINE_DATA_DIR (or DATABASE_URL's); pgbench from the machine's PostgreSQL client.
bench-pg: $(STAMP)
	$(BIN)/python -m bench.pg_bench --concurrency 16,64 --rate 10,20,40,80
	$(BIN)/python -m bench.pg_ceiling
	$(BIN)/python -m bench.ledger_bench

# The simulator's mutation score (docs/scenarios.md "Mutation score"): cosmic-ray over actors/
# and the money-moving engine/, each mutant judged by the simulator alone. SAMPLE=N runs a
# deterministic sample of N mutants; JOBS=N workers (default: every core).
MUTATION_STAMP := $(VENV)/.installed-mutation

$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m uv --version >/dev/null 2>&1 && $(PIP_INSTALL) -e '.[test,mutation]' \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,mutation]'
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(BIN)/python -m mutation $(if $(SAMPLE),--sample $(SAMPLE)) $(if $(JOBS),--jobs $(JOBS))

# The store conformance suite against the machine's PostgreSQL service.
test-store-service: $(STAMP)
	PAYENGINE_TEST_SERVICE_URL=$${PAYENGINE_TEST_SERVICE_URL:-postgresql://postgres@127.0.0.1:5432/test} \
	  $(BIN)/python -m pytest -q tests/store

# The real stack under real faults (issue 14; docs/operations.md "Reliability tests"): the long
# nemesis (>= 30 SIGKILLs, pg_terminate_backend, database restarts, a slow database), the soak
# (SOAK_S, default 600 s) and the failover of a pg_auto_failover pair (scripts/ha/, which
# installs its Debian packages when missing). Prints a summary of each. Their fast versions run
# in `make test`.
test-reliability: $(STAMP)
	scripts/ha/install.sh
	PAYENGINE_RELIABILITY=1 SOAK_S=$${SOAK_S:-600} $(BIN)/python -m pytest -q -s tests/reliability

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .mutation
