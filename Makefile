# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: run test lint install lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taskapi init-db --demo
	HOST=$(HOST) PORT=$(PORT) $(BIN)/taskapi serve

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

lock: $(STAMP)
	(echo '# Exact versions `make` installs (pip constraints). Regenerate: make lock'; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -v '^taskapi') > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
