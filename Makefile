# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean install lock

# requirements.lock pins every package the extras pull in, so a fresh clone installs what the
# suite was run against; `make lock` re-resolves it from pyproject.toml.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) -c requirements.lock -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m aztp_agents.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lock: $(STAMP)
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra all --extra dev --python-version 3.11 \
		--upgrade --no-header -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
