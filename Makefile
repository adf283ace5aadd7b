# payengine — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-pg clean venv test-store-service mutation

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/payengine demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

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
	$(BIN)/python -m pip install --quiet -e '.[test,mutation]'
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(BIN)/python -m mutation $(if $(SAMPLE),--sample $(SAMPLE)) $(if $(JOBS),--jobs $(JOBS))

# The store conformance suite against the machine's PostgreSQL service.
test-store-service: $(STAMP)
	PAYENGINE_TEST_SERVICE_URL=$${PAYENGINE_TEST_SERVICE_URL:-postgresql://postgres@127.0.0.1:5432/test} \
	  $(BIN)/python -m pytest -q tests/store

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .mutation
