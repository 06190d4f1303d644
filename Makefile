# django-evolink developer commands. `make test` and `make demo` are the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
# `make test` runs everything but the slow reliability tests; `make test-all` runs those too.
PYTEST_ARGS ?= -m "not slow"

.PHONY: install test test-all test-postgres lint docs demo bench build clean check-migrations \
	catalogue messages check-messages

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# `make demo` needs only the package's own dependencies (Django, DRF, django-q2, requests,
# Pillow, jsonschema), not the [dev] tools: its own stamp, so a later `make test` still
# installs [dev]; a venv that already has [dev] is reused as it is.
DEMO_STAMP := $(VENV)/.demo-installed
$(DEMO_STAMP): $(PY) pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
		echo "[demo] using the development environment of make install"; \
	else \
		echo "[demo] installing django-evolink and its dependencies into $(VENV) ..."; \
		$(PY) -m pip install --quiet --disable-pip-version-check -e .; \
	fi
	touch $(DEMO_STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_EXTRA)

test-postgres: $(STAMP)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy django_evolink

check-migrations: $(STAMP)
	$(PY) -m django makemigrations django_evolink --check --dry-run --settings=tests.settings

# `make messages`: collect every marked string into the ja and zh_Hans catalogues (package,
# example page, its script) and compile them; `make check-messages` fails when one is stale,
# untranslated, fuzzy or not compiled (CI). Both need GNU gettext; see docs/i18n.md.
messages: $(STAMP)
	$(PY) .ci/catalogues.py update

check-messages: $(STAMP)
	$(PY) .ci/catalogues.py check

# `make catalogue`: regenerate django_evolink/evolink/catalogue.json and docs/models.md
# from Evolink's parameter definitions (CATALOGUE_SOURCE, default ../shared/evolink-models.json).
CATALOGUE_SOURCE ?= ../shared/evolink-models.json
catalogue: $(STAMP)
	$(PY) scripts/build_catalogue.py $(CATALOGUE_SOURCE)

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

build: $(STAMP)
	$(PY) -m build --outdir dist .

# `make demo`: the example site + a django-q2 cluster + the Evolink emulator, in the
# foreground (Ctrl-C stops all). DEMO_PORT=8001 changes the site's port.
DEMO_PORT ?= 8000
demo: $(DEMO_STAMP)
	DEMO_PORT=$(DEMO_PORT) $(abspath $(PY)) example_project/run_demo.py

# `make bench`: the five benchmarks (PostgreSQL at 127.0.0.1:5432, trust auth, for
# callbacks/sweep/pages/submit), one table; see docs/performance.md. BENCH_ARGS=--quick.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build .pytest_cache .mypy_cache
