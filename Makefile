# Two commands for a fresh machine: `make demo` and `make test`.
# Both create the virtualenv and install what is missing first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -ra
# Two test processes (pytest-xdist), one test file each at a time: most integration tests wait on
# a broker, a worker or a sandbox, so two halve the wall time on two cores. PYTEST_WORKERS= runs
# them one by one.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: setup lint demo test test-unit scale chaos fuzz kafka-up kafka-down sandbox proto dashboards prometheus chromium clean

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

# Layers and import cycles first (pyproject.toml [tool.importlinter], docs/adr/0015): seconds.
lint: setup
	$(BIN)/lint-imports

test: lint kafka-up prometheus chromium
	$(BIN)/pytest $(PYTEST_WORKERS) -m "not scale" $(PYTEST_ARGS)

# The scale runs (customers, activities, order to cash: marked `scale`), kept out of `make test`
# for its 30-minute budget; run them before a release and after changing a flow's stages.
scale: lint kafka-up
	$(BIN)/pytest $(PYTEST_WORKERS) -m scale $(PYTEST_ARGS)

# The chaos run (bench/chaos.py, docs/adr/0020): 1,000 people, API faults, workers, sources and
# the run's own broker SIGKILLed; prints one JSON line of invariants (all 0) and figures.
chaos: setup
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

# The fuzz run (bench/fuzz.py): 10,000 generated malformed messages into every topic a worker reads
# and to the TIMS webhook; checks that every one is accounted for; one JSON line of figures.
fuzz: kafka-up
	$(BIN)/python bench/fuzz.py $(FUZZ_ARGS)

test-unit: setup prometheus
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

# Prometheus and promtool for the observability tests: the Debian package, installed when missing
# (root or sudo needed); its own service, if the package started one, is stopped again.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
prometheus:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  echo "installing the Debian package prometheus (prometheus, promtool)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
	  { $(SUDO) systemctl disable --now prometheus >/dev/null 2>&1 || true; }; }

# Chromium and its driver for the console's browser tests (tests/integration/test_console_browser.py):
# the Debian packages, installed when missing (root or sudo needed); Selenium is pointed at them.
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing the Debian packages chromium and chromium-driver"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

# Grafana dashboards as code: grafana/build.py writes grafana/dashboards/*.json
dashboards: setup
	$(BIN)/python grafana/build.py

sandbox: setup
	$(BIN)/stream-app sandbox

proto: setup
	bash scripts/gen_proto.sh

clean:
	rm -rf $(VENV) var .pytest_cache
