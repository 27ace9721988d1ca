# autoroi developer entry points. `make` (or `make help`) lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON      ?= python3
UV_VERSION  := 0.13.9
TOOLS       := .tools
UV          := $(TOOLS)/bin/uv
UV_STAMP    := $(TOOLS)/.uv-$(UV_VERSION)
VENV        := .venv
VENV_STAMP  := $(VENV)/.autoroi-synced

# Extra arguments: make test PYTEST_ARGS="-k replication -x"
PYTEST_ARGS ?=
BENCH_ARGS  ?=
DEMO_ARGS   ?=

# System packages used by the tests (Debian/Ubuntu names).
JAVA_PACKAGE ?= openjdk-17-jre-headless
PG_PACKAGES  ?= postgresql-15 postgresql
# Headless browser of the dashboard tests (tests/browser): Debian's chromium and its
# matching chromedriver (Selenium drives it; nothing is downloaded at test time).
CHROMIUM_PACKAGE ?= chromium
CHROMEDRIVER_PACKAGE ?= chromium-driver

.PHONY: help venv system-deps test lint format demo bench scan manifests clean soak images test-containers test-scale

help: ## Show this list of targets
	@echo "Usage: make <target> [PYTEST_ARGS=...]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV_STAMP):
	@if [ ! -x "$(TOOLS)/bin/python" ]; then \
		echo "creating $(TOOLS)/ (pinned uv==$(UV_VERSION))"; \
		$(PYTHON) -m venv $(TOOLS); \
	fi
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@touch $@

$(VENV_STAMP): uv.lock pyproject.toml $(UV_STAMP)
	$(UV) sync --frozen --compile-bytecode --extra all
	@touch $@

venv: $(VENV_STAMP) ## Create/update .venv from uv.lock (pinned uv in .tools/); instant when up to date

system-deps: ## Install missing system packages (PostgreSQL server, Java 17, chromium + chromedriver) with apt-get; no-op when present
	@need_pg=0; need_java=0; need_chromium=0; need_driver=0; \
	if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then need_pg=1; fi; \
	if ! command -v java >/dev/null 2>&1; then need_java=1; fi; \
	if ! command -v chromium >/dev/null 2>&1; then need_chromium=1; fi; \
	if ! command -v chromedriver >/dev/null 2>&1; then need_driver=1; fi; \
	if [ $$need_pg = 0 ] && [ $$need_java = 0 ] && [ $$need_chromium = 0 ] && [ $$need_driver = 0 ]; then \
		echo "system-deps: PostgreSQL server, java, chromium and chromedriver present"; exit 0; \
	fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "system-deps: missing$$( [ $$need_pg = 1 ] && echo ' PostgreSQL server')$$( [ $$need_java = 1 ] && echo ' java')$$( [ $$need_chromium = 1 ] && echo ' chromium')$$( [ $$need_driver = 1 ] && echo ' chromedriver');" \
			"no apt-get here, install them by hand" >&2; exit 1; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=(); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); \
	else echo "system-deps: need root (or passwordless sudo) to apt-get install" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	has_candidate() { \
		local c; c=$$(apt-cache policy "$$1" 2>/dev/null | awk '/Candidate:/ {print $$2; exit}'); \
		[ -n "$$c" ] && [ "$$c" != "(none)" ]; \
	}; \
	resolve() { \
		pkgs=(); missing=0; \
		if [ $$need_pg = 1 ]; then \
			pg=""; for p in $(PG_PACKAGES); do if has_candidate "$$p"; then pg=$$p; break; fi; done; \
			if [ -n "$$pg" ]; then pkgs+=("$$pg"); else missing=1; fi; \
		fi; \
		if [ $$need_java = 1 ]; then \
			if has_candidate $(JAVA_PACKAGE); then pkgs+=($(JAVA_PACKAGE)); else missing=1; fi; \
		fi; \
		if [ $$need_chromium = 1 ]; then \
			if has_candidate $(CHROMIUM_PACKAGE); then pkgs+=($(CHROMIUM_PACKAGE)); else missing=1; fi; \
		fi; \
		if [ $$need_driver = 1 ]; then \
			if has_candidate $(CHROMEDRIVER_PACKAGE); then pkgs+=($(CHROMEDRIVER_PACKAGE)); else missing=1; fi; \
		fi; \
		[ $$missing = 0 ]; \
	}; \
	if ! resolve; then \
		echo "system-deps: apt-get update"; \
		"$${SUDO[@]}" apt-get update -q </dev/null; \
		resolve || { echo "system-deps: no installable package found (tried: $(PG_PACKAGES) $(JAVA_PACKAGE) $(CHROMIUM_PACKAGE) $(CHROMEDRIVER_PACKAGE))" >&2; exit 1; }; \
	fi; \
	echo "system-deps: apt-get install $${pkgs[*]}"; \
	"$${SUDO[@]}" apt-get install -y -q --no-install-recommends "$${pkgs[@]}" </dev/null

test: venv system-deps ## Run the test suite except e2e, containers and scale (PYTEST_ARGS=... passes extra arguments)
	$(VENV)/bin/pytest -m "not e2e and not containers and not scale" $(PYTEST_ARGS)

test-scale: venv system-deps ## The engines in their distributed modes: a Spark standalone cluster (master + 2 workers on loopback), local and S3 (s3a) inputs
	containers/hadoop-aws.sh $(VENV)/bin/python
	$(VENV)/bin/pytest -m scale tests/scale $(PYTEST_ARGS)

test-containers: images ## Build the images, then the container tier: the images, the server and dashboard as containers, the pipelines in DockerRunner
	$(VENV)/bin/pytest -m containers tests/containers $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: venv ## Run the end-to-end local demo (autoroi demo)
	$(VENV)/bin/autoroi demo $(DEMO_ARGS)

bench: venv system-deps ## Run the replication benchmark (bench/replication.py; BENCH_ARGS=...)
	$(VENV)/bin/python bench/replication.py $(BENCH_ARGS)

bench-quality: venv system-deps ## Model quality against the truth with the peers (LightGBM S-learner, EconML DML: group "bench"); SEEDS=..., BENCH_ARGS=...
	$(UV) sync --frozen --compile-bytecode --extra all --group bench
	@rm -f $(VENV_STAMP)  # the next plain target syncs the default groups again
	@rc=0; for s in $(or $(SEEDS),20261207 20261208 20261209); do \
		$(VENV)/bin/python bench/model_quality.py --seed $$s --peers $(BENCH_ARGS) || rc=1; done; exit $$rc

images: venv ## Build the five images (<kfp.image_registry>/<kind>:<git sha>) here: docker.io, dockerd, a Debian base from the archive
	containers/build-images.sh $(IMAGES)

scan: venv ## Security scan of manifests and Dockerfiles (hadolint, checkov; see manifests/README.md)
	$(VENV)/bin/hadolint --config .hadolint.yaml containers/*/Dockerfile
	$(VENV)/bin/python tests/manifests/manifest_checks.py scan

manifests: venv ## Regenerate the manifests rendered from code (manifests/generate.py)
	$(VENV)/bin/python manifests/generate.py

clean: ## Remove var/, build outputs and caches (keeps .venv and .tools)
	rm -rf var/ build/ dist/ local_outputs/ .pytest_cache/ .ruff_cache/ .mypy_cache/
	find . -path ./.venv -prune -o -path ./.tools -prune -o -path ./.git -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

SOAK_RUNS  ?= 10
SOAK_TESTS ?= tests/integration/test_replication_*.py
SOAK_HOG   ?= 1

soak: venv system-deps ## Run SOAK_TESTS SOAK_RUNS times beside a CPU hog on SOAK_HOG cores (stress-ng); wall time per run
	@command -v stress-ng >/dev/null 2>&1 || { echo "soak: apt-get install stress-ng"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends stress-ng </dev/null; }
	@mkdir -p var; stress-ng --cpu $(SOAK_HOG) --timeout 6h --quiet & hog=$$!; \
	trap 'kill $$hog 2>/dev/null; wait $$hog 2>/dev/null' EXIT; \
	failed=0; \
	for i in $$(seq 1 $(SOAK_RUNS)); do \
		start=$$(date +%s.%N); rc=0; \
		$(VENV)/bin/pytest -q -p no:cacheprovider -m "not e2e" $(SOAK_TESTS) $(PYTEST_ARGS) > var/soak-$$i.log 2>&1 || rc=$$?; \
		end=$$(date +%s.%N); \
		printf 'soak run %2d: rc=%d  %6.1f s  %s\n' $$i $$rc $$(awk "BEGIN {print $$end - $$start}") "$$(tail -n 1 var/soak-$$i.log)"; \
		[ $$rc = 0 ] || failed=$$((failed + 1)); \
	done; \
	echo "soak: $$failed of $(SOAK_RUNS) runs failed (logs in var/soak-*.log)"; [ $$failed = 0 ]
