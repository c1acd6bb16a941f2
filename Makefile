# celeroot developer tasks. `make test` is what CI runs (see .ci/run).

GO ?= go

.PHONY: test ensure-redis bench check dev schema fuzz build soak mixed bench-status chaos

# Full test suite, with the race detector, against real Redis servers that
# the tests start themselves (streams/streamstest).
test: ensure-redis
	$(GO) test -race -count=1 -timeout 9m ./...

# Install redis-server if it is missing (apt-get, as root), or say how to.
ensure-redis:
	scripts/ensure-redis

# The Go benchmarks, then every `celeroot bench` scenario at its short sizes
# against a throwaway redis-server; `make bench BENCH=full` for full sizes.
bench: ensure-redis
	GO=$(GO) scripts/bench

# Static checks: vet, formatting, staticcheck and the package import rules.
check:
	$(GO) vet ./...
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*'))"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt needed on:"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) test -count=1 -run TestImportDirection ./...

# Longer runs of the timing-sensitive guarantees: five schedulers racing
# for every slot of a per-second schedule for 60 s (single node and cluster).
soak: ensure-redis
	CELEROOT_SCHEDULE_SECONDS=60 $(GO) test -race -count=1 -timeout 10m -run 'TestSchedulerFiresEachSlotOnce' -v ./agent/

# The long mixed run at full size: three agents, 2,000 tasks (failing,
# retried, fan-out jobs), one agent killed; then every status command, a
# rebuild, archive + trim and the audit replay (single node and cluster).
# `make test` runs it with 300 tasks.
mixed: ensure-redis
	$(GO) test -race -count=1 -timeout 20m -run 'TestLongMixedRun' -v ./ctl/ -args -mixed-tasks=2000

# The chaos scenarios at full size (10,000 tasks with agents killed at
# random; pauses, Redis restarts with AOF always and everysec, a cluster
# failover, a cut-off agent, Redis out of memory), each ending with the
# invariant checker; the counts of every run are printed at the end.
# `make test` runs each at a small size.
chaos: ensure-redis
	@rm -f chaos-report.jsonl
	$(GO) test -race -count=1 -timeout 20m -run 'TestChaos' -v ./ctl/ -args -chaos-full -chaos-report=$(CURDIR)/chaos-report.jsonl | grep -E '^(=== RUN|--- |\s+chaos_test.go|ok|FAIL|PASS)'
	@cat chaos-report.jsonl

# The status benchmark: cluster status, workers list and task list over
# projections of 10,000 workers and 100,000 tasks (single node and cluster).
bench-status: ensure-redis
	$(GO) test -run '^$$' -bench 'BenchmarkStatus' -benchtime 20x -timeout 20m ./ctl/

# Local single-node deployment for development.
dev:
	$(GO) run ./cmd/celeroot dev

schema:
	$(GO) generate ./schema/...

# Every fuzzer in turn (FUZZ=regexp for some) for FUZZTIME each, then a
# table of their runs (CI runs them for 10s each; see scripts/fuzz for the
# one report it accepts).
FUZZTIME ?= 30s
fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZ='$(FUZZ)' FUZZFLAGS='$(FUZZFLAGS)' scripts/fuzz

build:
	$(GO) build -o bin/celeroot ./cmd/celeroot
