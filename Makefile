# Hot Potato — every entry point. `make start` runs the system, `make test`
# runs every test; both first run `make setup`, which installs only what is
# missing: Deno (pinned, from npm), npm packages, wolfSSL with session export
# (built from Debian's source package), the C shim, a dev certificate.
# `make start ARGS="--workers sum=2 --function hello=examples/hello.ts"` passes
# ARGS to the launcher; ./hp runs any deno task the same way (./hp --help).

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
LOCAL_DENO := $(ROOT)/node_modules/@deno/linux-x64-glibc/deno
# An existing deno >= 2.9 on PATH is used when present (HOTPOTATO_DENO overrides).
DENO ?= $(shell $(ROOT)/scripts/find-deno.sh)
WOLFSSL := $(ROOT)/.local/wolfssl/lib/libwolfssl.so
SHIM := $(ROOT)/shim/libhotpotato.so
CERT := $(ROOT)/.local/certs/cert.pem
CFLAGS ?= -O2
SHIM_CFLAGS := -std=gnu11 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror

.PHONY: setup start test bench check fmt clean distclean tools deps wolfssl cert shim cluster

setup: tools deps wolfssl shim cert

tools:
	@bash scripts/setup-tools.sh

deps: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm is needed to install Deno and the npm packages" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

wolfssl: $(WOLFSSL)
$(WOLFSSL): scripts/setup-wolfssl.sh $(wildcard shim/patches/*.patch)
	@bash scripts/setup-wolfssl.sh

shim: $(SHIM)
SHIM_SOURCES := $(sort $(wildcard $(ROOT)/shim/*.c))
$(SHIM): $(SHIM_SOURCES)
	$(CC) $(CFLAGS) $(SHIM_CFLAGS) -o $@ $(SHIM_SOURCES) -lpthread -ldl

cert: $(CERT)
$(CERT):
	bash scripts/dev-cert.sh

start: setup
	"$(DENO)" task start $(ARGS)

test: setup
	bash scripts/test.sh "$(DENO)"

bench: setup
	"$(DENO)" task bench

# Several hosts (network namespaces) behind HAProxy, for a person to try
# (root: sudo when needed). ARGS="--hosts 3 --port 9443".
cluster: setup
	@if [ "$$(id -u)" = 0 ]; then "$(DENO)" run --no-prompt -A scripts/cluster.ts $(ARGS); \
	else sudo "$(DENO)" run --no-prompt -A scripts/cluster.ts $(ARGS); fi

check: setup
	"$(DENO)" task check

fmt: deps
	"$(DENO)" fmt

clean:
	rm -f $(SHIM)
	rm -rf .local/build

distclean: clean
	rm -rf .local node_modules
