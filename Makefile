# The two commands of the README: `make run` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never

UV_VERSION := 0.13.8
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
# Every package of the workspace: a new service or library is type-checked once it has a src/.
TYPED := $(wildcard libs/*/src services/*/src simulators/src)
GATEWAY_PORT := 8100
# How many processes of every API and worker `make run` starts (deploy/local/Procfile, scaled
# by scripts/devstack.py procfile: replica r of an API on its port + 10 * (r - 1)).
SCALE ?= 1
# apt-get needs root: as root nothing, elsewhere (GitHub Actions) sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help setup nginx pdf-libs promtool wrk run test lint typecheck deploy-check k8s-check docs-check \
	events-doc pytest bench token audit

help:
	@echo "make run    - the whole suite on this machine (Ctrl-C stops it)"
	@echo "make test   - lint, types, deployment files, the events catalogue and the test suite"
	@echo "make bench  - the listing, events, PDF, email, sync and billing-run benchmarks (docs/benchmarks.md)"
	@echo "make token  - an access token for a local user, for curl"
	@echo "make load   - locust owners through the gateway, then again with faults (USERS=200 LOAD_DURATION=5m)"
	@echo "make events-doc - rewrite docs/events.md from the services' events.py and consumers.py"
	@echo "make audit  - known vulnerabilities in the locked packages (needs PyPI; not in test)"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml simulators/pyproject.toml) | $(UV)
	$(UV) sync --frozen
	touch $@

setup: $(VENV)/.synced nginx pdf-libs

# The gateway runs Debian's nginx; install it when the machine has none (needs root).
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
		echo "Installing Debian's nginx-light for the gateway ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }

# What the invoice service's PDFs need from Debian (docs/pdfs.md): Pango, HarfBuzz's subsetter
# and fonts for non-Latin scripts; poppler-utils to look at rendered pages as pictures.
PDF_PACKAGES = libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
	fonts-noto-core fonts-noto-cjk poppler-utils
pdf-libs:
	@{ ldconfig -p | grep -q libharfbuzz-subset.so.0 && fc-list | grep -q "Noto Sans CJK" \
		&& command -v pdftoppm >/dev/null; } || { \
		echo "Installing Debian's Pango, fonts and poppler-utils for the invoice PDFs ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PDF_PACKAGES); }

# promtool, which unit-tests the alert rules (deploy/observability/), ships in Debian's
# prometheus package; the server itself is not started by the tests.
promtool:
	@command -v promtool >/dev/null || { \
		echo "Installing Debian's prometheus for promtool ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

# The listing benchmark's load generator, from Debian like nginx.
wrk:
	@command -v wrk >/dev/null || { \
		echo "Installing Debian's wrk for the benchmark ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

run: setup
	$(BIN)/python scripts/devstack.py provision
	@echo
	@echo "Gateway:       http://127.0.0.1:$(GATEWAY_PORT)/  (every API, one address)"
	@echo "Sign in:       http://127.0.0.1:$(GATEWAY_PORT)/api/auth/mock/login  (any name at the mock provider)"
	@echo "Invoices:      http://127.0.0.1:$(GATEWAY_PORT)/api/invoices"
	@echo "OpenAPI docs:  http://127.0.0.1:8101/docs (user)  http://127.0.0.1:8102/docs (invoice)  http://127.0.0.1:8103/docs (payment)  http://127.0.0.1:8105/docs (email)"
	@echo "FakePay:       http://127.0.0.1:9000/fakepay  (the card provider's simulator)"
	@echo "Email:         providers' simulator http://127.0.0.1:9200/_control/messages, SMTP sink on 9025"
	@echo "Billing API:   http://127.0.0.1:9100/v1/invoices  (the billing platform's simulator, docs/billing_api.md)"
	@echo "Sync:          http://127.0.0.1:8104/docs  (connect a billing platform: docs/sync.md)"
	@echo "A token:       make token SUB=alice@example.com"
	@echo "Processes:     $(SCALE) of every API and worker (make run SCALE=2: docs/deploy.md)"
	@echo
	@mkdir -p .run
	$(BIN)/python scripts/devstack.py procfile --scale $(SCALE) > .run/Procfile
	$(BIN)/honcho start -f .run/Procfile -d .

# Signs in at the local mock provider through the gateway, the way a browser does.
token: setup
	@$(BIN)/python -m user.cli token --provider mock --sub "$(or $(SUB),owner@example.com)" \
		--base-url http://127.0.0.1:$(GATEWAY_PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy $(TYPED)

# Known vulnerabilities in the locked packages (every group), from PyPI's advisory data. It
# needs the network, so it is not part of `make test`; CI runs it as a job of its own. An
# accepted advisory goes in audit-ignore.txt: its id and the reason.
audit: setup
	$(UV) export --frozen --no-emit-workspace --all-packages --quiet \
		| $(BIN)/pip-audit --strict --disable-pip --require-hashes --progress-spinner off \
			$$(awk '!/^#/ && NF {print "--ignore-vuln", $$1}' audit-ignore.txt) -r /dev/stdin

deploy-check: setup k8s-check observability-check
	$(BIN)/hadolint Dockerfile
	$(BIN)/hadolint deploy/gateway/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# checkov pins its own dependencies (boto3 among them) to versions that clash with the
# project's, so it gets a virtualenv of its own, named by its version, beside uv.
CHECKOV_VERSION := 3.3.30
CHECKOV := .tools/checkov-$(CHECKOV_VERSION)/bin/checkov

$(CHECKOV): | $(UV)
	$(UV) venv --quiet --clear --python 3.11 .tools/checkov-$(CHECKOV_VERSION)
	$(UV) pip install --quiet --python .tools/checkov-$(CHECKOV_VERSION)/bin/python \
		checkov==$(CHECKOV_VERSION)

# The Kubernetes manifests (deploy/k8s/README.md), offline: every overlay rendered, validated
# against Kubernetes' schemas and checked by checkov.
k8s-check: setup $(CHECKOV)
	deploy/k8s/check.sh $(BIN) $(CHECKOV) .run/k8s

# The alert rules and the dashboard (deploy/observability/README.md), offline: rules checked
# and unit-tested by promtool, the dashboard's queries parsed by it.
.PHONY: observability-check
observability-check: setup promtool
	deploy/observability/check.sh $(BIN)/python .run/observability

# docs/events.md is generated; a change to an event or a consumer without it fails here.
docs-check: setup
	$(BIN)/python scripts/events_catalogue.py --check

events-doc: setup
	$(BIN)/python scripts/events_catalogue.py

pytest: setup
	@if [ "$$LEDGERLINE_TEST_BACKEND" != containers ]; then $(BIN)/python scripts/devstack.py ensure-mysql; fi
	$(BIN)/pytest

test: lint typecheck deploy-check docs-check web-test pytest

bench: setup wrk
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/python scripts/bench_listing.py
	$(BIN)/python scripts/bench_events.py
	$(BIN)/python scripts/bench_pdf.py
	$(BIN)/python scripts/bench_email.py
	$(BIN)/python scripts/bench_sync.py
	$(BIN)/python scripts/bench_billing.py

# The PDF benchmark alone (docs/benchmarks.md): render and cached-download latency.
.PHONY: bench-pdf
bench-pdf: setup
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/python scripts/bench_pdf.py

# The sync benchmark alone (docs/benchmarks.md): the billing platform to the invoice schema.
.PHONY: bench-sync
bench-sync: setup
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/python scripts/bench_sync.py

# The events benchmark alone (docs/benchmarks.md): relay and consumers on a dev broker of its own.
.PHONY: bench-events
bench-events: setup
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/python scripts/bench_events.py

# The load test (docs/benchmarks.md, "Load"): the whole suite on free ports, USERS owners
# through the gateway for LOAD_DURATION, then the same run with faults injected. Loopback only.
USERS ?= 200
LOAD_DURATION ?= 5m
.PHONY: load
load: setup
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/python scripts/load.py --users $(USERS) --duration $(LOAD_DURATION) $(LOAD_ARGS)

# The scenario briefly (20 owners, 20 s) against the end-to-end suite: every request type runs,
# none answered 5xx. Part of `make test` too; this runs it alone.
.PHONY: load-smoke
load-smoke: setup
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/pytest tests/e2e/test_load_scenario.py

# --- The web app (web/README.md) --------------------------------------------------------------
# npm ci from the lock file. Playwright's own browser download is skipped: the end-to-end
# tests drive Debian's Chromium. Node 20.19 or newer must be on the machine (Vite 8 needs it;
# Debian 12's nodejs is 18).
.PHONY: web-setup web-types web-test
WEB_NODE_MODULES := web/node_modules/.package-lock.json

$(WEB_NODE_MODULES): web/package.json web/package-lock.json
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' \
		|| { echo "The web app needs Node.js 20.19 or newer (found: $$(node --version 2>&1))." >&2; exit 1; }
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

web-setup: $(WEB_NODE_MODULES)

# Rewrites the services' OpenAPI documents and the web app's types generated from them.
web-types: setup web-setup
	$(BIN)/python scripts/export_openapi.py
	cd web && npm run --silent types

# Documents and types fresh, lint, types, unit tests, the build and its size budget.
web-test: setup web-setup
	$(BIN)/python scripts/export_openapi.py --check
	cd web && npm run --silent types:check
	cd web && npm run --silent lint
	cd web && npm run --silent typecheck
	cd web && npm run --silent test
	cd web && npm run --silent build
	cd web && npm run --silent size

# --- the web app: served by the gateway, tested end to end in a browser ----------------------

# The end-to-end tests' browser: Debian's Chromium (Playwright downloads none), or the one
# CHROMIUM_PATH names (CI's runner, whose Ubuntu has Chromium only as a snap).
.PHONY: chromium web-build web-e2e bench-web
chromium:
	@test -x "$${CHROMIUM_PATH:-/usr/bin/chromium}" || { \
		echo "Installing Debian's Chromium for the end-to-end tests ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The app as the gateway serves it (web/dist); `make run` serves it once built.
web-build: web-setup
	cd web && npm run build

# Playwright through the gateway against the whole suite on free ports (web/e2e/README.md);
# screenshots of every screen land in web/e2e-artifacts/.
web-e2e: setup chromium web-build
	@if [ "$$LEDGERLINE_TEST_BACKEND" != containers ]; then $(BIN)/python scripts/devstack.py ensure-mysql; fi
	cd web && npx tsc --noEmit -p e2e
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm run e2e

# Filter change to rows shown in the browser, beside the API's own time (docs/benchmarks.md).
bench-web: setup chromium web-build
	$(BIN)/python scripts/devstack.py ensure-mysql
	$(BIN)/python scripts/bench_web.py

run: web-build
test: web-e2e
# The fault drill (docs/reliability.md): the whole suite under traffic and faults for DURATION
# seconds, then every record reconciled; exits non-zero on anything lost or doubled.
DURATION ?= 180
.PHONY: drill
drill: setup
	$(BIN)/python scripts/drill.py --duration $(DURATION)
