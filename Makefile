# Two commands set mechcell up: `make demo` (the main job) and `make test`.
# The venv is created on first use; CPU torch is installed first so no CUDA build is pulled.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: browser tests will skip"; fi
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check mechcell tests benchmarks
	$(VENV)/bin/ruff format --check mechcell tests benchmarks

demo: $(STAMP)
	$(VENV)/bin/mechcell demo

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
