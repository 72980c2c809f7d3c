# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
# One stamp per lock file: `make install` and `make run` install the runtime pins alone; the dev
# targets (test, fuzz, bench, mutate, lint, lock) add the dev lock's on top of them.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
PIP_INSTALL   := -m pip install --quiet --disable-pip-version-check

.PHONY: run test fuzz bench bench-scale lint install lock clean docs-assets mutate

install: $(RUNTIME_STAMP)

# The runtime pins, each checked against its hashes, then the project itself, which has none: it
# is built here by the pinned setuptools and fetches nothing. The Containerfile runs these two.
$(RUNTIME_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP_INSTALL) --require-hashes -r requirements.lock
	$(BIN)/python $(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

# The dev lock is the runtime lock (the same pins) plus the dev extra: installed over the runtime
# pins, it adds the dev tools and changes nothing else.
$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(BIN)/python $(PIP_INSTALL) --require-hashes -r requirements-dev.lock
	touch $@

run: $(RUNTIME_STAMP)
	$(BIN)/taskapi init-db --demo
	HOST=$(HOST) PORT=$(PORT) $(BIN)/taskapi serve

# pytest runs in a random order (pytest-randomly, a dev dependency; the seed is printed first
# and last): replay one with `make test PYTEST_ARGS=--randomly-seed=N`, or run in file order
# with `PYTEST_ARGS="-p no:randomly"`.
PYTEST_ARGS ?=
test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/mypy --config-file bench/mypy.ini bench
	$(BIN)/vulture
	$(BIN)/pytest $(PYTEST_ARGS)

# Schemathesis, every check, 500 examples an operation: against a server of its own (PostgreSQL,
# Redis, hypercorn), or against yours with FUZZ_URL, FUZZ_PASSWORD and FUZZ_USERNAME (a dedicated
# account, registered if it does not exist; README, "Fuzzing a running server").
FUZZ_URL      ?=
FUZZ_USERNAME ?= fuzzer
FUZZ_PASSWORD ?=
fuzz: $(DEV_STAMP)
ifeq ($(FUZZ_URL),)
	TASKAPI_FUZZ_EXAMPLES=$${TASKAPI_FUZZ_EXAMPLES:-500} $(BIN)/pytest -p no:cacheprovider tests/http/test_openapi_fuzz.py
else
	$(BIN)/python -m tests.http.fuzz --base "$(FUZZ_URL)" --username "$(FUZZ_USERNAME)" \
	    --password "$(FUZZ_PASSWORD)" --examples $${TASKAPI_FUZZ_EXAMPLES:-500}
endif

# Load benchmark (needs wrk): a throwaway local PostgreSQL + Redis deployment, or BENCH_ARGS
# such as "--base https://api.example.com --username U --password P".
bench: $(DEV_STAMP)
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)

# How cost grows (needs wrk; about half an hour): a throwaway local deployment under 1,000 ->
# 1,000,000 tasks and 64 -> 5,000 connections; the side-by-side harness's peers too when
# BENCH_PEERS_DIR names its directory. Report and charts in bench/results/. SCALE_ARGS: e.g.
# "--sizes 1000 --connections 64 --seconds 3" for a quick run.
SCALE_ARGS ?=
bench-scale: $(DEV_STAMP)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

# Mutation testing, on demand (not part of `make test`): mutmut changes these modules one small
# edit at a time, runs the tests that reach each edit, and prints the kill rate and the survivors.
MUTATE_MODULES ?= taskapi/domain/tasks.py taskapi/domain/effects.py taskapi/domain/cache.py \
                  taskapi/domain/limits.py taskapi/domain/work.py taskapi/http/tokens.py \
                  taskapi/domain/jobs.py
MUTATE_WORKERS ?= 2
mutate: $(DEV_STAMP)
	$(BIN)/python -m mutation.run --workers $(MUTATE_WORKERS) $(MUTATE_MODULES)

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/mypy \
	  && $(BIN)/mypy --config-file bench/mypy.ini bench && $(BIN)/vulture

# Both lock files, from pyproject.toml, for every platform and Python from 3.11 (uv's universal
# resolution): the runtime pins (the dependencies and the build requirements), then the dev pins,
# held to the runtime ones. The pins already in the files stay unless LOCK_ARGS says otherwise:
# `make lock LOCK_ARGS=--upgrade`, or `LOCK_ARGS="--upgrade-package quart"`.
LOCK_ARGS ?=
BUILD_REQUIRES = $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
             --custom-compile-command 'make lock' $(LOCK_ARGS) pyproject.toml -
lock: $(DEV_STAMP)
	$(BUILD_REQUIRES) | $(UV_COMPILE) -o requirements.lock
	$(BUILD_REQUIRES) | $(UV_COMPILE) --extra dev -c requirements.lock -o requirements-dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache mutants

# Refresh the pinned documentation UIs in taskapi/static/docs (versions in taskapi/http/docs.py;
# read only when this target runs, and it stops when either is missing).
DOCS_PY := taskapi/http/docs.py
SWAGGER_UI_VERSION = $(shell sed -n 's/^SWAGGER_UI_VERSION = "\(.*\)"/\1/p' $(DOCS_PY))
REDOC_VERSION      = $(shell sed -n 's/^REDOC_VERSION = "\(.*\)"/\1/p' $(DOCS_PY))
REDOC_LOGO := data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E
docs-assets:
	@test -n "$(SWAGGER_UI_VERSION)" -a -n "$(REDOC_VERSION)" || { echo "docs-assets: no versions in $(DOCS_PY)" >&2; exit 1; }
	rm -rf taskapi/static/docs && mkdir -p taskapi/static/docs/swagger-ui-$(SWAGGER_UI_VERSION) taskapi/static/docs/redoc-$(REDOC_VERSION)
	cd /tmp && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) redoc@$(REDOC_VERSION)
	tar xzf /tmp/swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz -C taskapi/static/docs/swagger-ui-$(SWAGGER_UI_VERSION) --strip-components=1 package/swagger-ui-bundle.js package/swagger-ui.css package/LICENSE
	tar xzf /tmp/redoc-$(REDOC_VERSION).tgz -C taskapi/static/docs/redoc-$(REDOC_VERSION) --strip-components=2 package/bundles/redoc.standalone.js package/bundles/redoc.standalone.js.LICENSE.txt
	tar xzf /tmp/redoc-$(REDOC_VERSION).tgz -C taskapi/static/docs/redoc-$(REDOC_VERSION) --strip-components=1 package/LICENSE
	# ReDoc's sidebar shows a logo fetched from its CDN (refused by the site's CSP, and offline it
	# fails): an empty inline SVG instead
	sed -i 's|https://cdn.redoc.ly/redoc/logo-mini.svg|$(REDOC_LOGO)|' taskapi/static/docs/redoc-$(REDOC_VERSION)/redoc.standalone.js
