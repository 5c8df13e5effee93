# s3balance developer targets.  Works on a fresh Debian 12 with python3 + make:
#   make venv       create .venv (python3 -m venv), install requirements/test.txt
#                   and the project in editable compat mode (repo root on sys.path)
#   make deps       Debian packages (python3-venv, rclone, curl), only if missing
#   make setup      venv and deps, side by side
#   make test       ruff, mypy, then the trial suite; last line "N passed, N failed"
#                   (TESTS=tests.test_harness to run a subset)
#   make lint       ruff check s3balance tests
#   make typecheck  mypy (config: .ci/mypy.ini)
#   make run        two SeaweedFS + s3balance on http://127.0.0.1:8080 (scripts/run-dev)
#   make bench | soak | fuzz   the load tools in bench/ (ARGS="..." passes options)
#   make clean      build/test leftovers;  make distclean  also .venv and run/

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.s3balance-installed
TESTS ?= tests
ARGS ?=
MYPY_CONFIG := .ci/mypy.ini
TYPED := s3balance tests/harness

.PHONY: venv deps setup test lint typecheck run bench soak fuzz clean distclean

venv: $(STAMP)

# Re-installs only when the requirements or setup.py change.
$(STAMP): requirements/runtime.txt requirements/test.txt setup.py
	@if [ ! -x $(BIN)/python ]; then \
		$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || scripts/install-system-deps; \
		echo "$(PYTHON) -m venv $(VENV)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Without byte-compiling: pip would spend 18 of its 30 s on it, on one
	# core; `make test` compiles beside ruff and mypy (COMPILE), and
	# anything else compiles what it imports when it first does.
	$(BIN)/python -m pip install --quiet --no-compile -r requirements/test.txt
	# compat mode puts the repo root itself on sys.path, so twisted.plugin
	# finds twisted/plugins/ here (strict/lenient modes would not).
	$(BIN)/python -m pip install --quiet --no-compile -e . --config-settings editable_mode=compat
	@touch $@

deps:
	@scripts/install-system-deps

# The virtualenv and the Debian packages, side by side where they can be: pip
# mostly computes, apt mostly downloads and unpacks.  Where python3-venv is
# missing, the packages come first (the virtualenv needs it).
setup:
	@if $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory --output-sync=target -j2 venv deps; \
	else \
		$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory venv; \
	fi

lint: venv
	$(BIN)/ruff check s3balance tests

typecheck: venv
	$(BIN)/mypy --config-file $(MYPY_CONFIG) $(TYPED)

# Lint and types run first but do not stop the suite; any failure still makes
# `make test` fail, and the last line stays the test count.  Meanwhile the
# virtualenv and the sources are byte-compiled on the other core, once,
# instead of by every test worker at once (a no-op when nothing changed).
COMPILE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib s3balance tests migrations twisted/plugins bench
test: setup
	@failed=""; \
	$(COMPILE) >/dev/null 2>&1 & compiling=$$!; \
	echo "== ruff check s3balance tests"; \
	$(BIN)/ruff check s3balance tests || failed="$$failed ruff"; \
	echo "== mypy $(TYPED)"; \
	$(BIN)/mypy --config-file $(MYPY_CONFIG) $(TYPED) || failed="$$failed mypy"; \
	wait $$compiling; \
	echo "== trial $(TESTS)"; \
	S3BALANCE_CHECKS_FAILED="$${failed# }" scripts/run-tests $(TESTS)

run: setup
	scripts/run-dev $(ARGS)

bench: venv
	@if [ -f bench/__main__.py ]; then $(BIN)/python -m bench $(ARGS); \
	else echo "make bench: bench/__main__.py does not exist yet (nothing to run)"; fi

soak: venv
	@if [ -f bench/soak.py ]; then $(BIN)/python -m bench.soak $(ARGS); \
	else echo "make soak: bench/soak.py does not exist yet (nothing to run)"; fi

fuzz: venv
	@if [ -f bench/fuzz.py ]; then $(BIN)/python -m bench.fuzz $(ARGS); \
	else echo "make fuzz: bench/fuzz.py does not exist yet (nothing to run)"; fi

clean:
	rm -rf _trial_temp _trial_temp*.lock _trial_temp-* build dist *.egg-info .mypy_cache .ruff_cache .hypothesis
	rm -f twisted/plugins/dropin.cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) run
