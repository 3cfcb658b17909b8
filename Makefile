# heavyread — the front door. `make demo` runs the system; `make test` runs every check.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build test lint unit deps-test demo help

all: build

help:
	@echo "make demo   run a local stack (redis, writer, readers)"
	@echo "make test   install what is missing, then lint and run all tests"
	@echo "make demo-up / demo-down   the local stack in the background / stopped"
	@echo "make start [N=3]  the docker-compose stack with N readers; stop, health, test-write, logs, scale N=5, compose-bench"

# One package per invocation: built together with the writer, cargo would
# unify features and link tokio into the reader, which must not have it.
build:
	$(CARGO) build --release --locked -p heavyread-reader
	$(CARGO) build --release --locked -p heavyread-writer
	$(CARGO) build --release --locked -p heavyread-bench

deps-test:
	@ops/install-deps.sh test

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@if $(CARGO) tree --locked -p heavyread-reader -e normal --prefix none | grep -q '^tokio '; then \
		echo "the reader links tokio: keep heavyread-sync's publisher feature out of its dependencies" >&2; exit 1; \
	fi

# nextest runs each test in its own process; plain cargo test is the fallback.
unit:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked; \
	else \
		$(CARGO) test --workspace --locked; \
	fi

# bench-smoke: every benchmark step on tiny sizes, so the suite keeps working
# (it checks that each step produced numbers, not that they are fast).
# soak-smoke: the soak for 60 s (80% of the measured read rate plus 1k
# writes/s): no errors, RSS and descriptors flat (bench/soak.sh).
test: deps-test lint unit ops-check bench-smoke soak-smoke

# ops/: checks of the deployment files, the live binaries under the shipped
# seccomp filters, and the bare-metal demo (ops/check.sh says what each does).
.PHONY: ops-check
ops-check:
	@ops/check.sh

# The local stack without Docker (ops/demo.sh): redis 6399, writer 8080,
# readers 8081-8083, Prometheus 9090. `demo` stays up until Ctrl-C or
# `make demo-stop`; `demo-up` / `demo-down` are the non-interactive forms.
.PHONY: demo-up demo-down demo-stop
demo:
	@ops/demo.sh run

demo-up:
	@ops/demo.sh up

demo-down demo-stop:
	@ops/demo.sh down

# The docker-compose stack (ops/docker-compose.yml): gateway :9080, writer
# :8080, reader-direct :8081, Prometheus :9090, Grafana :3000 (admin/admin).
# N readers (3 by default) behind the gateway, for `start` and `scale` alike.
COMPOSE ?= docker compose
DC = $(COMPOSE) -f ops/docker-compose.yml
N ?= 3
SERVICE ?=

.PHONY: start stop health test-write logs scale compose-bench
# The gateway's node list and Prometheus's reader targets are rewritten for
# the N it starts (after a `make scale N=5`, a plain `make start` is back to
# 3 readers, and so are both lists): after the build, which can take
# minutes, and just before `up`, so neither lists a replica for long before
# it runs, nor keeps routing to one `up` is about to remove.
start:
	$(DC) build
	@ops/scale.sh --files $(N)
	$(DC) up -d --scale reader=$(N)
	@echo "gateway http://127.0.0.1:9080/post?id=...  writer :8080  grafana http://127.0.0.1:3000 (admin/admin)"

stop:
	$(DC) down

health:
	@ops/compose.sh health

test-write:
	@ops/compose.sh test-write

logs:
	$(DC) logs -f --tail=100 $(SERVICE)

# make scale N=5: N reader replicas, and the gateway's node list and
# Prometheus's reader targets rewritten to match.
scale:
	@ops/scale.sh $(N)

# wrk through the gateway and against reader-direct (seeds BENCH_IDS posts first).
compose-bench:
	@ops/compose.sh bench

# Benchmarks: a private local stack, every measurement, bench/benchmark-report.md (see bench/run_benchmark.sh).
.PHONY: bench bench-smoke soak soak-smoke
bench:
	bench/run_benchmark.sh

bench-smoke:
	bench/run_benchmark.sh --smoke

# The 10-minute soak (bench/soak.sh --help for its settings and pass criteria).
soak:
	bench/soak.sh

soak-smoke:
	bench/soak.sh --seconds 60
