# The two commands a user needs are `make demo` and `make test`; both bootstrap what they use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.wasmlet-installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-fast lint modules registry-package component-tools clean

## demo: run the example workloads with the agent in standalone mode (no cluster).
# Four example Pods fail on purpose (an exit code, a trap, a memory limit, a deadline), so
# `wasmlet run` exits 1 after its summary says so; any other exit code fails the demo.
demo: $(STAMP)
	@$(BIN)/wasmlet run examples/workloads || [ $$? -eq 1 ]

## test: bootstrap everything the suite needs, check types and style, and run all of it (tests/e2e only with a cluster).
test: lint registry-package component-tools
	$(BIN)/python -m pytest

## lint: mypy --strict over wasmlet.*, ruff over the tree, and the import-layer contracts.
lint: $(STAMP)
	$(BIN)/mypy
	$(BIN)/ruff check .
	# The editable install hides the source roots from import-linter; name them.
	PYTHONPATH=common/src:operator/src:nodeagent/src $(BIN)/lint-imports

## test-fast: the unit tier only.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## modules: rebuild the example wasm modules and components from their sources (the .wasm files are committed).
modules: $(STAMP) component-tools
	$(BIN)/python examples/modules/build.py
	$(BIN)/python examples/components/build.py

# jco (npm), pinned by examples/components/package-lock.json, for the example components: the
# preview1 adapter (`jco new --wasi-command`) and WASI 0.2's WIT files.
JCO := $(VENV)/tools/npm/node_modules/.bin/jco
component-tools: $(JCO)
$(JCO): examples/components/package-lock.json | $(STAMP)
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq npm; }
	mkdir -p $(VENV)/tools/npm
	cp examples/components/package.json examples/components/package-lock.json $(VENV)/tools/npm/
	cd $(VENV)/tools/npm && npm ci --no-audit --no-fund --silent
	touch $@

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "wasmlet needs Python >= 3.11 (found $$($(PYTHON) --version)); set PYTHON=" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The reference OCI registry (CNCF distribution) from Debian; the test fixtures start it on loopback.
# Only the binary is unpacked, into the virtualenv: installing the package would enable and start
# a docker-registry system service on the host.
REGISTRY := $(VENV)/tools/docker-registry
registry-package: $(REGISTRY)
$(REGISTRY): | $(STAMP)
	@rm -rf $(VENV)/tools/deb && mkdir -p $(VENV)/tools/deb
	cd $(VENV)/tools/deb && { apt-get download docker-registry 2>/dev/null \
	  || { $(SUDO) apt-get update -qq && apt-get download docker-registry; }; }
	dpkg-deb -x $(VENV)/tools/deb/docker-registry_*.deb $(VENV)/tools/deb/root
	install -m 0755 $(VENV)/tools/deb/root/usr/bin/docker-registry $@
	rm -rf $(VENV)/tools/deb

clean:
	rm -rf $(VENV) build *.egg-info
