# Quick start: `make demo` runs the main job on the local server; `make test` sets up and runs
# every check. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo serve clean soak docs notebooks stress

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

# The demo needs only the `demo` extra (server + langchain), none of the dev toolchain, and
# installs it with uv (seconds, not a minute); plain pip if uv can't be had.
DEMO_STAMP := $(VENV)/.demo-installed
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv --without-pip $(VENV)
	( $(PY) -m pip --python $(BIN)/python install --quiet uv \
	  && $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[demo]' ) \
	|| $(PY) -m pip --python $(BIN)/python install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check langchain_moltcities tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(DEMO_STAMP)
	$(BIN)/moltcities demo

serve: $(STAMP)
	$(BIN)/moltcities serve

# Long chaos runs in both server modes; figures go to tests/reliability/SOAK.md and
# RESTART_SOAK.md (an agent process killed with SIGKILL again and again on one state file).
SOAK_SECONDS ?= 180
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.reliability.chaos
	SOAK_SECONDS=$(SOAK_SECONDS) CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.reliability.restart_chaos

# The whole suite STRESS_RUNS times in a row with a busy loop on each core, stopping at the
# first failed run; one row a run in tests/STRESS_LOG.md (see tests/stress.sh).
STRESS_RUNS ?= 10
stress: $(STAMP)
	tests/stress.sh $(STRESS_RUNS)

# Re-run the notebooks and commit what they print (a test checks the outputs are current).
notebooks: $(STAMP)
	$(BIN)/python tests/test_notebooks.py --refresh

# The API reference from the docstrings (pdoc), in docs/api/index.html.
docs: $(STAMP)
	$(BIN)/python docs/build_docs.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
