# sluice — `make test` is what CI runs (.ci/run). See README.md.
SHELL := /bin/bash
CARGO ?= cargo
BASELINES ?= $(abspath ../shared/baselines)
BENCH_N ?= 100000

.PHONY: fuzz help demo test image lint lint-infra deploy watch invoke-ingest invoke-loader build-lambda fmt build bench bench-flatten bench-loader bench-ingest bench-e2e bench-api bench-parquet bench-query bench-concurrency bench-cold bench-updates bench-statement coverage services-up services-down clean-services

help: ## List the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "%-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: ## The whole pipeline locally (sample API → ingest → S3 → loader → Postgres); run again for the next window
	scripts/with-services $(CARGO) run -q -p sluice-cli -- demo $(DEMO_ARGS)

test: lint-infra ## fmt check, clippy -D warnings (in the test build itself), every test (starts Postgres if needed)
	scripts/lint-image
	$(CARGO) fmt --all --check
	RUSTC_WORKSPACE_WRAPPER=$(CURDIR)/scripts/clippy-rustc scripts/with-services $(CARGO) test --workspace

lint: lint-infra ## cargo fmt --check, clippy with warnings as errors, cfn-lint + sam validate, hadolint
	scripts/lint-image
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint-infra: ## cfn-lint and sam validate --lint on infra/template.yaml (pinned, venv under target/)
	scripts/lint-infra

fmt: ## Format the code
	$(CARGO) fmt --all

image: ## the API's container image (docker/podman build; without an engine: hadolint, the static build, the image test)
	scripts/image

build: ## Debug build of everything
	$(CARGO) build --workspace

fuzz: ## cargo fuzz: each target FUZZ_SECONDS (default 600) in turn; not part of make test
	scripts/fuzz $(FUZZ_TARGETS)

bench: bench-flatten bench-loader bench-statement bench-updates bench-ingest bench-e2e bench-concurrency bench-api bench-parquet bench-query bench-cold ## All benchmarks (not tests)

bench-flatten: ## flatten+CSV vs the Python DFS and pandas baselines and a serde_json floor
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) bench/flatten.sh

bench-loader: ## loader path vs raw COPY, COPY+staging, the tutorial's per-row upsert and the Hotmart mapping's typed COPY floor; RSS at 1M rows
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) scripts/with-services bench/loader.sh

bench-statement: ## the upsert statement alone: the Python baseline's plain ON CONFLICT vs it with sluice's no-op test, row count, and both
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) scripts/with-services bench/statement.sh

bench-updates: ## the schedule's workload at the loader: the sample API's updates mode (20 % changed, 80 % new) and an unchanged lookback re-fetch, vs the Python staging upsert, raw COPY and dlt merge
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) scripts/with-services bench/updates.sh

bench-ingest: ## API → flatten → CSV → S3 (sample API and the Python mock) vs the Python DFS flattener; RSS
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) bench/ingest.sh

build-lambda: ## cargo lambda build --release --arm64 --output-format zip, each function on its own (installs cargo-lambda from PyPI if missing)
	scripts/build-lambda --output-format zip

watch: ## cargo lambda watch: both functions locally (env: [workspace.metadata.lambda.env], .env)
	scripts/cargo-lambda watch

invoke-ingest: ## invoke the watched ingest with events/eventbridge-schedule.json
	scripts/cargo-lambda invoke sluice-ingest --data-file events/eventbridge-schedule.json

invoke-loader: ## invoke the watched loader with events/s3-object-created.json
	scripts/cargo-lambda invoke sluice-loader --data-file events/s3-object-created.json

deploy: lint-infra ## cargo lambda build --release --arm64, the pinned RDS CA bundle beside the loader, datasets/ beside the API and compaction, then sam deploy (guided the first time)
	scripts/build-lambda
	scripts/rds-ca-bundle target/lambda/sluice-loader/rds-global-bundle.pem
	rm -rf target/lambda/sluice-api/datasets && cp -r datasets target/lambda/sluice-api/datasets
	rm -rf target/lambda/sluice-compact/datasets && cp -r datasets target/lambda/sluice-compact/datasets
	cd infra && if [ -f samconfig.toml ]; then ../target/infra-venv/bin/sam deploy; \
	  else ../target/infra-venv/bin/sam deploy --guided --capabilities CAPABILITY_IAM; fi

coverage: ## line coverage (cargo-llvm-cov) of crates/api's tests; HTML in target/llvm-cov/html
	scripts/coverage

bench-api: ## the collection API vs FastAPI (collect_fastapi.py) under wrk: req/s, p99, RSS, cold start, zip size
	BASELINES=$(BASELINES) bench/api.sh

bench-parquet: ## JSON Lines of unicorns -> Parquet: sluice (validated) vs pyarrow via pandas (awswrangler's path) and pyarrow's JSON reader
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) bench/parquet.sh

bench-query: ## sluice query (DataFusion) vs DuckDB over 1M unicorns; a day of per-request objects before/after compaction
	BASELINES=$(BASELINES) BENCH_N=$${BENCH_N:-1000000} bench/query.sh

bench-e2e: ## API → S3 → Postgres: sluice (ingest + loader) vs dlt, sample API and Python mock; RSS per process
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) scripts/with-services bench/e2e.sh

bench-concurrency: ## 1, 2, 4 and 8 loaders at once on distinct objects into one table: rows/s, every row there once
	BASELINES=$(BASELINES) BENCH_N=$(BENCH_N) scripts/with-services bench/concurrency.sh

bench-cold: ## each Lambda's cold start (process start → first poll for an event) and its arm64 zip size
	bench/cold.sh

services-up: ## Start a throwaway Postgres cluster (prints its DATABASE_URL)
	@scripts/pg-cluster start && scripts/pg-cluster url

services-down: ## Stop the throwaway Postgres cluster
	@scripts/pg-cluster stop
