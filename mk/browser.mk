# mk/browser.mk - the dashboard page's browser tests (t/browser/): Debian's
# chromium driven by playwright-core (npm), against the real stack.
#
#   make browser-test         build what is needed, run the browser suite
#   make browser-deps         npm ci in t/browser (only when the lock changed)
#   make dashboard-csp        update the page's CSP hashes after editing it
#   make browser-screenshots  10 minutes of traffic, then the reference
#                             screenshots in docs/screenshots/
#
# prove runs the same suite through t/07-dashboard-browser.t.

BROWSER_DIR    := t/browser
BROWSER_STAMP  := $(BROWSER_DIR)/node_modules/.package-lock.json
CHROMIUM       ?= /usr/bin/chromium

.PHONY: browser-deps browser-test dashboard-csp browser-screenshots

browser-deps: $(BROWSER_STAMP)
	@test -x "$(CHROMIUM)" || { echo "browser tests: $(CHROMIUM) not found;" \
	    "apt-get install chromium (or set CHROMIUM=...)" >&2; exit 1; }

# npm ci writes node_modules/.package-lock.json: the stamp
$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "browser tests: npm not found" \
	    "(apt-get install nodejs npm)" >&2; exit 1; }
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

browser-test: all devdb browser-deps
	CHROMIUM=$(CHROMIUM) node --test --test-reporter=spec $(BROWSER_DIR)/

dashboard-csp:
	@node $(BROWSER_DIR)/csp-hash.js --write

# pngquant (Debian package, optional) makes them about 3 times smaller
browser-screenshots: all devdb browser-deps
	CHROMIUM=$(CHROMIUM) node $(BROWSER_DIR)/demo.js --minutes 10 --out docs/screenshots
	@if command -v pngquant >/dev/null; then \
	    pngquant --quality 60-90 --speed 1 --strip --force --ext .png \
	        docs/screenshots/dashboard-desktop.png docs/screenshots/dashboard-1000px.png; \
	else echo "pngquant not installed: screenshots left uncompressed" >&2; fi
