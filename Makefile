# Two commands for a fresh machine: `make demo` and `make test`.
# Both create the virtualenv and install what is missing first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -ra

.PHONY: setup demo test test-unit kafka-up kafka-down sandbox proto clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed (found " + sys.version.split()[0] + ")")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

kafka-up: setup
	$(BIN)/stream-app kafka up

kafka-down: setup
	$(BIN)/stream-app kafka down

demo: kafka-up
	$(BIN)/stream-app demo

test: kafka-up
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

sandbox: setup
	$(BIN)/stream-app sandbox

proto: setup
	bash scripts/gen_proto.sh

clean:
	rm -rf $(VENV) var .pytest_cache
