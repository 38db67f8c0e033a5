# make test-asan: the module and the sidecar built with AddressSanitizer and
# UBSan, the whole Test::Nginx suite run against them (nginx itself is
# Debian's, with the ASan runtime preloaded by a wrapper), plus the
# sidecar's unit tests; any sanitizer report fails the run.

ASAN_BUILD     := $(BUILD)/asan
ASAN_NGX_BUILD := $(ASAN_BUILD)/nginx
ASAN_MODULE    := $(ASAN_BUILD)/ngx_chat_module.so
ASAN_FLAGS     := -fsanitize=address,undefined -fno-omit-frame-pointer \
                  -fno-sanitize-recover=undefined

.PHONY: module-asan test-asan

module-asan: $(ASAN_MODULE)

$(ASAN_NGX_BUILD)/objs/Makefile: config
	@rm -rf $(ASAN_NGX_BUILD) && mkdir -p $(ASAN_BUILD)
	cp -r $(NGX_SRC) $(ASAN_NGX_BUILD)
	cd $(ASAN_NGX_BUILD) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(MODULE_CFLAGS) $(ASAN_FLAGS)" \
	        --with-ld-opt="$(ASAN_FLAGS)" \
	        --add-dynamic-module=$(CURDIR) > configure.log 2>&1 || \
	    { tail -30 configure.log; exit 1; }

$(ASAN_MODULE): $(ASAN_NGX_BUILD)/objs/Makefile $(MODULE_SOURCES)
	$(MAKE) -s -C $(ASAN_NGX_BUILD) -f objs/Makefile modules
	cp $(ASAN_NGX_BUILD)/objs/ngx_http_chat_module.so $@.tmp && mv -f $@.tmp $@

test-asan: deps-test $(ASAN_MODULE) $(if $(MONGO_URI),,devdb)
	$(MAKE) -s -C sidecar SANITIZE=1 BUILD_DIR=$(CURDIR)/$(BUILD)/sidecar
	@scripts/test-asan.sh
