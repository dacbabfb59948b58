# Everything a fresh machine needs (Python 3.11, Java 17 and Maven present) is set up here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export ANOMALY_LAKEHOUSE_ROOT ?= $(CURDIR)/.lakehouse
KAFKA_PORT ?= 9092
export ANOMALY_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
SPARK_CONNECT_PORT ?= 15002
EVENTS ?= 20000
# Test processes, each with its own broker, Spark session and sandbox (0: one process).
TEST_WORKERS ?= 2

.PHONY: install jars browser broker-start broker-stop broker-status spark-start spark-stop \
	spark-status demo dev dev-classic test lint bench clean metrics-store \
	metrics-store-fetch

# pip at errors only (--quiet twice): no build-backend notices on a fresh set-up
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed  ## virtualenv with the pinned stack

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME) && cp deploy/dagster.yaml $@

jars: install  ## Kafka broker jars (Maven) and Spark packages (Delta, Kafka connector)
	$(BIN)/python -m anomaly_assets.devtools.fetch_jars

broker-start: jars
	$(BIN)/anomaly-kafka start --port $(KAFKA_PORT)

broker-stop:
	$(BIN)/anomaly-kafka stop --port $(KAFKA_PORT)

broker-status:
	$(BIN)/anomaly-kafka status --port $(KAFKA_PORT)

spark-start: jars  ## the warm local Spark Connect server (Delta, Kafka connector)
	$(BIN)/anomaly-spark start --port $(SPARK_CONNECT_PORT)

spark-stop:
	$(BIN)/anomaly-spark stop --port $(SPARK_CONNECT_PORT)

spark-status:
	$(BIN)/anomaly-spark status --port $(SPARK_CONNECT_PORT)

demo: jars $(DAGSTER_HOME)/dagster.yaml  ## broker, generated events, every asset materialised
	$(BIN)/python -m anomaly_assets.devtools.demo --events $(EVENTS) --port $(KAFKA_PORT)

dev: broker-start spark-start $(DAGSTER_HOME)/dagster.yaml  ## Dagster UI + daemon on http://127.0.0.1:3000, runs on the warm Spark; triage page on :8765
	$(BIN)/anomaly-triage init-local
	trap 'kill 0' EXIT; $(BIN)/anomaly-triage serve --port 8765 & \
	ANOMALY_SPARK_REMOTE=$${ANOMALY_SPARK_REMOTE:-sc://127.0.0.1:$(SPARK_CONNECT_PORT)} \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

dev-classic: broker-start $(DAGSTER_HOME)/dagster.yaml  ## the same, each run starting its own Spark JVM
	ANOMALY_SPARK_REMOTE= $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

browser:  ## Debian's Chromium, for the UI screenshot test
	command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

metrics-store-fetch: install  ## VictoriaMetrics from Debian's package: the OTLP metrics store of the tests
	$(BIN)/python -m anomaly_assets.devtools.metrics_store fetch

metrics-store: metrics-store-fetch  ## VictoriaMetrics on 127.0.0.1:8428 receiving OTLP (foreground)
	$(BIN)/python -m anomaly_assets.devtools.metrics_store run --port 8428

test: jars browser metrics-store-fetch  ## lint, then the whole suite on a real broker, Spark and Delta
	$(BIN)/ruff check anomaly_assets anomaly_assets_tests bench
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: install
	$(BIN)/ruff check anomaly_assets anomaly_assets_tests bench

bench: jars
	$(BIN)/python bench/bench_cold_start.py
	$(BIN)/python bench/bench_generator.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_freshness.py
	$(BIN)/python bench/bench_run_cost.py

clean: broker-stop spark-stop
	rm -rf .lakehouse .dagster_home
