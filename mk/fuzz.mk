# make fuzz          builds every libFuzzer harness of fuzz/ into build/fuzz/
#                    and runs each for FUZZ_SECONDS (default 60) on a copy
#                    of its committed corpus; fails if any found a crash
# make fuzz-regress  runs every harness once over its committed corpus and
#                    fuzz/regressions/<target>/ (seconds; part of the tests)
# make fuzz-build    only builds
# make fuzz-<target> fuzzes one target (FUZZ_SECONDS applies)
#
# See fuzz/README.md.  The module files are compiled as they are, with
# -ffunction-sections -fdata-sections and linked with --gc-sections, so
# that only the functions a harness reaches (and what they call) are kept;
# the nginx core functions those call come from fuzz/ngx_shim.c, and any
# one missing is a link error.  The linker is LLVM's lld: GNU ld keeps
# every function alive through its SanitizerCoverage sections (COMDAT
# groups retained by __start___sancov_*), so nothing would be dropped.

FUZZ_CC        ?= clang
FUZZ_LLD       ?= lld-14
FUZZ_PACKAGES  := clang libclang-rt-14-dev lld-14
FUZZ_SECONDS   ?= 60
FUZZ_RSS_MB    ?= 2048
FUZZ_TIMEOUT   ?= 20
FUZZ_OUT       := $(BUILD)/fuzz
FUZZ_OBJ       := $(FUZZ_OUT)/obj

FUZZ_TARGETS   := ws_frame ws_stream ws_handshake jwt json correlation \
                  route wire collector http_head

FUZZ_SAN       := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                  -fno-omit-frame-pointer
FUZZ_CFLAGS    := -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                  -ffunction-sections -fdata-sections \
                  -Wall -Wno-unused-function -Wno-unused-parameter \
                  -Wno-deprecated-declarations
FUZZ_LDFLAGS   := $(FUZZ_SAN) -fsanitize=fuzzer -fuse-ld=$(FUZZ_LLD) \
                  -Wl,--gc-sections

FUZZ_NGX_INCS  := $(addprefix -I$(NGX_BUILD)/src/,core event event/modules \
                      os/unix http http/modules http/v2) \
                  -I$(NGX_BUILD)/objs -I$(CURDIR) -I$(CURDIR)/ngx_chat_module \
                  -I/usr/include/libmongoc-1.0 -I/usr/include/libbson-1.0 \
                  -I$(CURDIR)/fuzz
FUZZ_SC_INCS   := -I$(CURDIR) -I$(CURDIR)/sidecar -I$(CURDIR)/fuzz \
                  -D_GNU_SOURCE

# what each harness links besides its own file (module files that a
# harness #includes, to reach static functions, are not listed)
FUZZ_NGX_SHIM      := $(FUZZ_OBJ)/fuzz/ngx_shim.o
FUZZ_LINK_ws_frame     := $(FUZZ_NGX_SHIM) \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_ws_codec.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_json.o
FUZZ_LINK_ws_stream    := $(FUZZ_NGX_SHIM) \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_ws_connection.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_ws_messages.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_ws_resume.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_render.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_ws_codec.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_json.o
FUZZ_LINK_ws_handshake := $(FUZZ_NGX_SHIM) \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_request.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_ws_codec.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_json.o
FUZZ_LINK_jwt          := $(FUZZ_NGX_SHIM) \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_jwt.o \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_json.o
FUZZ_LINK_json         := $(FUZZ_NGX_SHIM) \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_json.o
FUZZ_LINK_correlation  := $(FUZZ_NGX_SHIM) \
                          $(FUZZ_OBJ)/ngx/ngx_http_chat_correlation.o
FUZZ_LINK_route        := $(FUZZ_NGX_SHIM)
FUZZ_LINK_wire         := $(addprefix $(FUZZ_OBJ)/sidecar/,ingest.o records.o)
FUZZ_LINK_http_head    := $(addprefix $(FUZZ_OBJ)/sidecar/,httpd.o log.o)
FUZZ_LINK_collector    := $(addprefix $(FUZZ_OBJ)/sidecar/,ingest.o \
                          cluster.o collector.o workers.o endpoints.o ring.o records.o \
                          dashboard_json.o prometheus.o isotime.o log.o)

FUZZ_LIBS_ngx      := -lcjson -lcrypto -lbson-1.0 -lm
FUZZ_LIBS_sidecar  := -lcjson -lpthread -lm
FUZZ_SIDE_TARGETS  := wire collector http_head

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_OUT)/fuzz_%)

.PHONY: fuzz fuzz-build fuzz-regress fuzz-deps $(FUZZ_TARGETS:%=fuzz-%)

# clang, its libFuzzer runtime and lld: installed when missing (Debian)
fuzz-deps:
	@missing=; for p in $(FUZZ_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	        || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "fuzz: installing$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	        >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	        >/dev/null; } || { echo "fuzz: cannot install$$missing" >&2; \
	        exit 1; }; fi

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RSS_MB=$(FUZZ_RSS_MB) \
	    FUZZ_TIMEOUT=$(FUZZ_TIMEOUT) \
	    fuzz/run.sh fuzz $(FUZZ_OUT) $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@FUZZ_RSS_MB=$(FUZZ_RSS_MB) FUZZ_TIMEOUT=$(FUZZ_TIMEOUT) \
	    fuzz/run.sh regress $(FUZZ_OUT) $(FUZZ_TARGETS)

$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: $(FUZZ_OUT)/fuzz_%
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RSS_MB=$(FUZZ_RSS_MB) \
	    FUZZ_TIMEOUT=$(FUZZ_TIMEOUT) fuzz/run.sh fuzz $(FUZZ_OUT) $*

# A global whose initializer points at a function (an nginx variable or
# command table) stays alive through ASan's metadata for it when coverage
# is on too, and keeps that function and what it calls: for the files
# where that reaches nginx functions the shim does not have, ASan's global
# redzones are off (their fuzzed functions use no global).
FUZZ_NO_GLOBALS := -mllvm -asan-globals=0
$(FUZZ_OBJ)/ngx/ngx_http_chat_correlation.o: FUZZ_EXTRA := $(FUZZ_NO_GLOBALS)
$(FUZZ_OBJ)/fuzz/fuzz_route.o: FUZZ_EXTRA := $(FUZZ_NO_GLOBALS)

# the module objects need nginx's generated headers (objs/ngx_auto_*.h)
$(FUZZ_OBJ)/ngx/%.o: ngx_chat_module/%.c $(NGX_BUILD)/objs/Makefile | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_EXTRA) $(FUZZ_NGX_INCS) -MMD -MP -c -o $@ $<

$(FUZZ_OBJ)/fuzz/ngx_shim.o: fuzz/ngx_shim.c $(NGX_BUILD)/objs/Makefile | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror $(FUZZ_NGX_INCS) -MMD -MP -c -o $@ $<

$(FUZZ_OBJ)/sidecar/%.o: sidecar/%.c | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 $(FUZZ_CFLAGS) $(FUZZ_SC_INCS) -MMD -MP -c -o $@ $<

# harnesses: the nginx ones need the configured tree, the sidecar ones not
$(FUZZ_OBJ)/fuzz/fuzz_%.o: fuzz/fuzz_%.c $(NGX_BUILD)/objs/Makefile | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_EXTRA) $(FUZZ_NGX_INCS) -MMD -MP -c -o $@ $<

$(FUZZ_SIDE_TARGETS:%=$(FUZZ_OBJ)/fuzz/fuzz_%.o): $(FUZZ_OBJ)/fuzz/fuzz_%.o: \
        fuzz/fuzz_%.c | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 $(FUZZ_CFLAGS) $(FUZZ_SC_INCS) -MMD -MP -c -o $@ $<

define FUZZ_LINK_RULE
$(FUZZ_OUT)/fuzz_$(1): $(FUZZ_OBJ)/fuzz/fuzz_$(1).o $(FUZZ_LINK_$(1))
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $$@ $$^ \
	    $(if $(filter $(1),$(FUZZ_SIDE_TARGETS)),$(FUZZ_LIBS_sidecar),$(FUZZ_LIBS_ngx))
endef

$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_LINK_RULE,$(t))))

-include $(shell find $(FUZZ_OBJ) -name '*.d' 2>/dev/null)
