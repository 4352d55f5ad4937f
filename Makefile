# Carnet — developer entry points. `make run` starts the platform, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every installable part: the contracts, the kit, each service, the gateway, the launcher.
PYPROJECTS := $(wildcard protos/pyproject.toml services/*/pyproject.toml gateway/pyproject.toml infra/*/pyproject.toml)
PARTS := $(patsubst %/pyproject.toml,%,$(PYPROJECTS))
SOURCES := $(wildcard services/*/src gateway/src infra/*/src)

.PHONY: run test venv lint typecheck protos check-protos buf-lint buf-breaking pytest clean

venv: $(STAMP)

$(STAMP): $(PYPROJECTS) requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt $(foreach p,$(PARTS),-e $(p))
	touch $(STAMP)

run: venv
	$(PY) -m carnet_launcher run

test: venv lint typecheck check-protos buf-lint buf-breaking pytest

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(PY) -m mypy $(SOURCES)

protos: venv
	PYTHON=$(PY) tools/gen-protos

# Regenerates the Python code from protos/ and fails if it differs from what is committed.
check-protos: venv
	PYTHON=$(PY) tools/gen-protos
	git diff --exit-code --stat -- protos
	test -z "$$(git status --porcelain --untracked-files=all -- protos)"

buf-lint: venv
	cd protos && ../$(VENV)/bin/buf lint && ../$(VENV)/bin/buf build -o /dev/null

buf-breaking: venv
	tools/buf-breaking

pytest: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
