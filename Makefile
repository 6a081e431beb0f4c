# Two commands do all set-up on a fresh machine with Python 3.11: `make dev` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The instance: an exported DAGSTER_HOME, else .dagster_home/ here (`make dev DAGSTER_HOME_DIR=...` too).
DAGSTER_HOME_DIR ?= $(or $(DAGSTER_HOME),$(CURDIR)/.dagster_home)
DEV_HOST ?= 127.0.0.1
DEV_PORT ?= 3000

.PHONY: install test-deps dev test test-fast lint bench mlflow-ui clean

## uv (a platform dependency: it installs deployed versions too) installs the platform's 255
## packages from PyPI with an empty cache, bytecode included: `make install` in 45 s (pip: 110 s).
## `--compile-bytecode` matters: dbt and the sandboxes run with PYTHONDONTWRITEBYTECODE (child_env),
## so without it every dbt command compiles dbt from source again (make test: 28 -> 45 CPU-min).
## pip itself is kept current for service wheel builds (`pip wheel`, handlers/python_project.py).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'uv>=0.5,<1'
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --upgrade-package pip pip -e '.[dev]'
	touch $(STAMP)

## The dbt manifest is prepared here (into .platform/dbt/, keyed by the project's content), not parsed on
## a definitions load.
install: $(STAMP)
	$(BIN)/python -m platform_assets.kinds.dataset.dbt_manifest >/dev/null

## UI and daemon on the embedded default: SQLite, local deploy targets, the demo catalog. The workspace
## is generated from platform.yaml's `code_locations` (workspace.yaml itself for `single`).
dev: install
	mkdir -p $(DAGSTER_HOME_DIR)
	test -f $(DAGSTER_HOME_DIR)/dagster.yaml || cp deploy/dagster.local.yaml $(DAGSTER_HOME_DIR)/dagster.yaml
	$(BIN)/deliver workspace --output $(DAGSTER_HOME_DIR)/workspace.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -w $(DAGSTER_HOME_DIR)/workspace.yaml -h $(DEV_HOST) -p $(DEV_PORT)

## The MLflow UI on the store of the instance in use (DAGSTER_HOME, else DAGSTER_HOME_DIR), resolved by the
## platform itself so platform.yaml's `mlflow` settings count too.
mlflow-ui: install
	store=$$(DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/python -m resources.mlflow_registry) && set -- $$store && \
	  $(BIN)/mlflow ui --backend-store-uri "$$1" --default-artifact-root "$$2" --host 127.0.0.1 --port 5000

## Debian packages the tests need (PostgreSQL); a no-op once installed, needs root otherwise.
test-deps:
	scripts/install-test-deps.sh

## Lint, validate the demo catalog, run the whole test suite (the slowest tests listed at the end) in
## four workers: on two cores, since much of it waits (sensor ticks, servers, health checks), and the
## daemon tests go first (tests/conftest.py) so the rest overlaps them.
test: install test-deps lint
	$(BIN)/deliver validate
	$(BIN)/python -m pytest -n 4 --dist load --durations=15

## The fast loop: the tests marked `unit` (no platform instance, delivery or server; see tests/conftest.py).
test-fast: install lint
	$(BIN)/python -m pytest -m unit -n 2 --durations=5

lint: install
	$(BIN)/ruff check .

## Definitions load time against bare Dagster, promotion and runtime sensor tick times, the serving
## wrapper's latency cost, a manual delivery's overhead over its steps' work, the lead time from a
## source change to healthy in prod with the daemon, a team's code location in an organisation of 1,000
## deliverables (benchmarks, not tests).
bench: install
	$(BIN)/python benchmarks/bench_definitions.py --repeat 5 --json .platform/bench.json
	$(BIN)/python benchmarks/bench_promotion.py --size 1000 --repeat 5 --json .platform/bench-promotion.json
	$(BIN)/python benchmarks/bench_runtime.py --local 200 --kubernetes 1000 --repeat 5 --json .platform/bench-runtime.json
	$(BIN)/python benchmarks/bench_serving.py --requests 2000 --rounds 5 --json .platform/bench-serving.json
	$(BIN)/python benchmarks/bench_lead_time.py --repeat 3 --json .platform/bench-lead-time.json
	$(BIN)/python benchmarks/bench_daemon_lead_time.py --changes 5 --json .platform/bench-daemon-lead-time.json
	$(BIN)/python benchmarks/bench_team_locations.py --size 1000 --repeat 5 --deliveries 3 --json .platform/bench-team-locations.json

clean:
	rm -rf $(VENV) .dagster_home .platform .pytest_cache .ruff_cache
