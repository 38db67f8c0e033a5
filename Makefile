# ngx_chat_module + sidecar: build, run, test.
#
#   make            build the nginx module and the sidecar
#   make run        install what is missing, build, start everything (8001)
#   make run-cluster  ... as two nginx hosts on a 3-node NATS cluster (8011, 8012)
#   make test       install what is missing, build, run every test
#   make deps       install the Debian packages to build and run (idempotent)
#   make deps-test  ... and those the tests use
#
# See README.md.

SHELL          := /bin/bash
.DEFAULT_GOAL  := all

BUILD          ?= build
NGX_SRC        ?= /usr/share/nginx/src
NGINX          ?= /usr/sbin/nginx
GO             ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
PORT           ?= 8001

NGX_BUILD      := $(BUILD)/nginx
MODULE_SO      := $(BUILD)/ngx_chat_module.so
SIDECAR_BIN    := $(BUILD)/sidecar/chat-sidecar
DEVDB_BIN      := $(BUILD)/devdb

# the project's own C is held to -Wall -Wextra -Werror (nginx adds -Wall
# -Werror itself); unused parameters are the norm in nginx callbacks
MODULE_CFLAGS  ?= -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

MODULE_SOURCES := config wire/chat_wire.h $(wildcard ngx_chat_module/*.[ch])
DEVDB_SOURCES  := $(wildcard devdb/*.go) devdb/go.mod devdb/go.sum

.PHONY: all module sidecar devdb deps deps-test run run-cluster test test-unit test-harness \
        test-nginx test-asan clean token

all: module sidecar

module: $(MODULE_SO)

# configure once; only a change of the addon script reconfigures
$(NGX_BUILD)/objs/Makefile: config
	@rm -rf $(NGX_BUILD) && mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(MODULE_CFLAGS)" \
	        --add-dynamic-module=$(CURDIR) > configure.log 2>&1 || \
	    { tail -30 configure.log; exit 1; }

$(MODULE_SO): $(NGX_BUILD)/objs/Makefile $(MODULE_SOURCES)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	cp $(NGX_BUILD)/objs/ngx_http_chat_module.so $@.tmp && mv -f $@.tmp $@

sidecar:
	$(MAKE) -s -C sidecar all tools BUILD_DIR=$(CURDIR)/$(BUILD)/sidecar

devdb: $(DEVDB_BIN)

$(DEVDB_BIN): $(DEVDB_SOURCES)
	@test -x "$(GO)" || { echo "Go >= 1.24 is needed to build the embedded \
	database (FerretDB); none found at '$(GO)'. Install it, or point at \
	an existing MongoDB with MONGO_URI=mongodb://..." >&2; exit 1; }
	cd devdb && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$(GO)" build -trimpath \
	    -o $(CURDIR)/$@ .

deps:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

run: deps all $(if $(MONGO_URI),,devdb)
	@PORT=$(PORT) MONGO_URI="$(MONGO_URI)" DASHBOARD_PASSWORD="$(DASHBOARD_PASSWORD)" \
	    scripts/run.sh

# PORT, NATS_PORT, ... from the command line or the environment only: the
# script's defaults (8011, 14222) are not make run's
run-cluster: deps all $(if $(MONGO_URI),,devdb)
	@MONGO_URI="$(MONGO_URI)" DASHBOARD_PASSWORD="$(DASHBOARD_PASSWORD)" \
	    scripts/run-cluster.sh

test: deps-test all $(if $(MONGO_URI),,devdb)
	@scripts/test.sh

test-unit: sidecar
	$(MAKE) -s -C sidecar test BUILD_DIR=$(CURDIR)/$(BUILD)/sidecar

test-harness:
	prove -I t/harness t/harness/t/

test-nginx: all devdb
	@scripts/test.sh nginx

# a bearer token for trying the API: make token USER=alice
token:
	@scripts/mint-jwt.sh "$${USER_ID:-$${USER:-dev}}"

clean:
	rm -rf $(BUILD) t/servroot*

# further targets, one concern a file (fuzzing, sanitizers, benchmarks,
# browser tests)
-include mk/*.mk
