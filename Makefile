# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: run test fuzz bench lint install lock clean docs-assets mutate

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taskapi init-db --demo
	HOST=$(HOST) PORT=$(PORT) $(BIN)/taskapi serve

# pytest runs in a random order (pytest-randomly, a dev dependency; the seed is printed first
# and last): replay one with `make test PYTEST_ARGS=--randomly-seed=N`, or run in file order
# with `PYTEST_ARGS="-p no:randomly"`.
PYTEST_ARGS ?=
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/vulture
	$(BIN)/pytest $(PYTEST_ARGS)

fuzz: $(STAMP)
	TASKAPI_FUZZ_EXAMPLES=$${TASKAPI_FUZZ_EXAMPLES:-500} $(BIN)/pytest -p no:cacheprovider tests/http/test_openapi_fuzz.py

# Load benchmark (needs wrk): a throwaway local PostgreSQL + Redis deployment, or BENCH_ARGS
# such as "--base https://api.example.com --username U --password P".
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)

# Mutation testing, on demand (not part of `make test`): mutmut changes these modules one small
# edit at a time, runs the tests that reach each edit, and prints the kill rate and the survivors.
MUTATE_MODULES ?= taskapi/domain/tasks.py taskapi/domain/effects.py taskapi/domain/cache.py \
                  taskapi/domain/limits.py taskapi/domain/work.py taskapi/http/tokens.py \
                  taskapi/domain/jobs.py
MUTATE_WORKERS ?= 2
mutate: $(STAMP)
	$(BIN)/python -m mutation.run --workers $(MUTATE_WORKERS) $(MUTATE_MODULES)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/mypy && $(BIN)/vulture

lock: $(STAMP)
	(echo '# Exact versions `make` installs (pip constraints). Regenerate: make lock'; \
	 $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -e '^taskapi' -e '^pip==') > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache mutants

# Refresh the pinned documentation UIs in taskapi/static/docs (versions in taskapi/http/docs.py;
# read only when this target runs, and it stops when either is missing).
DOCS_PY := taskapi/http/docs.py
SWAGGER_UI_VERSION = $(shell sed -n 's/^SWAGGER_UI_VERSION = "\(.*\)"/\1/p' $(DOCS_PY))
REDOC_VERSION      = $(shell sed -n 's/^REDOC_VERSION = "\(.*\)"/\1/p' $(DOCS_PY))
docs-assets:
	@test -n "$(SWAGGER_UI_VERSION)" -a -n "$(REDOC_VERSION)" || { echo "docs-assets: no versions in $(DOCS_PY)" >&2; exit 1; }
	rm -rf taskapi/static/docs && mkdir -p taskapi/static/docs/swagger-ui-$(SWAGGER_UI_VERSION) taskapi/static/docs/redoc-$(REDOC_VERSION)
	cd /tmp && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) redoc@$(REDOC_VERSION)
	tar xzf /tmp/swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz -C taskapi/static/docs/swagger-ui-$(SWAGGER_UI_VERSION) --strip-components=1 package/swagger-ui-bundle.js package/swagger-ui.css package/LICENSE
	tar xzf /tmp/redoc-$(REDOC_VERSION).tgz -C taskapi/static/docs/redoc-$(REDOC_VERSION) --strip-components=2 package/bundles/redoc.standalone.js package/bundles/redoc.standalone.js.LICENSE.txt
	tar xzf /tmp/redoc-$(REDOC_VERSION).tgz -C taskapi/static/docs/redoc-$(REDOC_VERSION) --strip-components=1 package/LICENSE
