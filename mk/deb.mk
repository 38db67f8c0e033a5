# mk/deb.mk - Debian packages (docs/OPERATIONS.md):
#
#   make deb        libnginx-mod-http-chat and chat-sidecar .deb files in
#                   build/deb/ (debian/, dpkg-buildpackage, lintian)
#   make test-deb   build them, install both on this machine, run the
#                   packaged stack on a private port, purge, check nothing
#                   is left (t/90-deb.t runs it in make test, as root)
#   make deps-deb   install the packaging tools (scripts/deps.sh deb)

DEB_OUT ?= $(BUILD)/deb

.PHONY: deb test-deb deps-deb

deps-deb:
	@scripts/deps.sh deb

deb: deps-deb
	@scripts/build-deb.sh $(DEB_OUT)

test-deb: deb $(if $(MONGO_URI),,devdb)
	@scripts/test-deb.sh $(DEB_OUT)
