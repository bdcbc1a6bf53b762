# launcher: build, test, demo and benchmarks. `make test` installs what the
# tests need (tmux, perl, OpenSSH server, Docker engine, busybox, systemd-analyze) when it is
# missing, so it runs on a fresh Debian/Ubuntu machine.
GO      ?= go
BIN     := bin/launcher
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# urfave/cli's generators of markdown and man pages (unused here) pull in
# blackfriday, whose package init was 0.3-0.5 ms of every command's start.
TAGS    := urfave_cli_no_docs
# Fuzz budgets are execution counts, not durations: a duration races a
# deadline in Go 1.26's fuzz coordinator and fails with "context deadline
# exceeded" and no crasher under load (golang/go#75804, fixed in Go 1.27).
FUZZ_PARSE  ?= 80000x
FUZZ_RENDER ?= 200000x
FUZZ_QUOTE  ?= 3000x
# Packages the tests need, and the commands that tell they are there.
TEST_PKGS := tmux perl procps openssh-server openssh-client docker.io busybox-static chromium systemd
DEMO_PKGS := tmux perl procps

.PHONY: all build test test-unit lint stress fuzz vet fmt-check deps deps-demo demo bench clean

all: build

build:
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/launcher

# Install Debian packages that are missing (as root, or with sudo).
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps:
	$(call install_missing,$(TEST_PKGS))

deps-demo:
	$(call install_missing,$(DEMO_PKGS))

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The whole suite: unit, integration (real tmux, sshd, dockerd), race
# detector, and a short fuzzing run of the loader and the renderer.
test: deps fmt-check vet lint
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz

# A newcomer's first command: the tests that need neither root, nor tmux,
# sshd or Docker (config, engine on the fake executor, Lua host and
# bindings, stdlib, quoting). `make test` is the whole suite.
UNIT_PKGS := ./engine/... ./lua/... ./stdlib/... ./executor/shell ./executor/fake ./cmd/launcher/api
test-unit: fmt-check vet
	$(GO) test -race -count=1 $(UNIT_PKGS)

# golangci-lint, built from the module proxy into ./bin on first use (no
# download of a prebuilt binary is possible here): staticcheck, errorlint
# and the layering rules of .golangci.yml (depguard), then a check that
# every layering rule really fires (.ci/lint-guards).
GOLANGCI_VERSION := v2.15.0
GOLANGCI := bin/golangci-lint-$(GOLANGCI_VERSION)
$(GOLANGCI):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv bin/golangci-lint $(GOLANGCI)

lint: $(GOLANGCI)
	$(GOLANGCI) run ./...
	.ci/lint-guards $(GOLANGCI)

# The full counts of the suite's stress tests (1000 runs of a process that
# prints one line and exits at once, each line in its log; 20 stops of 25
# processes on an SSH machine, each by SIGINT alone); run it
# beside CPU-burning loops to see a race the suite's smaller count misses.
STRESS_RUNS ?= 1000
stress: deps
	LAUNCHER_STRESS_RUNS=$(STRESS_RUNS) $(GO) test -count=1 -timeout 60m -run '^(TestQuickOutputIsNeverLost|TestRemoteKillOf25UsesSIGINT|TestDashboardKeepsUpWith200)$$' -v ./cmd/launcher

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_PARSE) ./engine/config
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZ_RENDER) ./engine/config
	$(GO) test -run '^$$' -fuzz '^FuzzQuote$$' -fuzztime $(FUZZ_QUOTE) ./executor/shell

# The README's first command: bring up examples/quickstart on this machine
# and show its status.
demo: deps-demo build
	$(BIN) -c examples/quickstart/launcher.yaml run planner
	$(BIN) -c examples/quickstart/launcher.yaml status
	@echo
	@echo "follow the logs:  $(BIN) -c examples/quickstart/launcher.yaml watch"
	@echo "stop everything:  $(BIN) -c examples/quickstart/launcher.yaml kill --all"

# Benchmarks: the CLI against raw tmux floors (cmd/bench), then the Go
# benchmarks (SSH transport, Lua host, config), each reporting its ratio.
bench: deps build
	$(GO) run ./cmd/bench
	$(GO) test -run '^$$' -bench . -benchtime 3x ./cmd/launcher
	$(GO) test -run '^$$' -bench . ./engine/... ./executor/... ./lua/... ./stdlib/...

clean:
	rm -rf bin
