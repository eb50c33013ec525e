# Two commands for a newcomer: `make demo` and `make test`. Both create/update .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-browser demo test lint bench fuzz faults services-up services-down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the dashboard's browser tests and bench (Debian's package: the
# network allows no browser download of Playwright's own). Installed with apt-get when run
# as root; otherwise the browser tests skip and say why.
CHROMIUM ?= /usr/bin/chromium
install-browser:
	@if [ -x "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "could not install chromium: the browser tests will be skipped"; \
	else \
		echo "no Chromium and no root apt-get to install it: the browser tests will be skipped"; \
	fi

demo: install
	$(BIN)/vitalstream demo

# The pytest session fixtures start the services the tests need (see tests/conftest.py).
test: install install-browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check stream models alerting dashboard tests bench fuzz

# Fault campaign (docs/faults.md): 9 simulated patients for 20 min through a broker, two
# workers and Redis while 14 faults are injected; ~25 min. Counts and plot in out/faults/.
faults: install
	$(BIN)/python bench/faults.py --out out/faults

# Coverage-guided fuzzing (atheris) of every message decoder: FUZZ_RUNS inputs each; prints
# inputs tried and crashes per decoder (docs/fuzzing.md). Crashing inputs go to fuzz-crashes/.
FUZZ_RUNS ?= 100000
fuzz: install
	$(BIN)/python -m fuzz.run --runs $(FUZZ_RUNS) --json fuzz-results.json

bench: install install-browser
	$(BIN)/python bench/bench_dsp.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_aggregator.py
	$(BIN)/python bench/bench_dashboard.py
	$(BIN)/python bench/bench_deadletter.py
	$(BIN)/python bench/bench_worker_stages.py
	# ~25 min: the largest N one and two workers keep in real time (docs/capacity.md).
	$(BIN)/python bench/bench_capacity.py --out out/capacity
	# ~2 min: what the load, broker and Faust cost before the worker does any work.
	$(BIN)/python bench/bench_capacity_floor.py --out out/capacity-floor

services-up: install
	$(BIN)/vitalstream services up

services-down: install
	$(BIN)/vitalstream services down

clean:
	rm -rf $(VENV) .vitalstream .pytest_cache
