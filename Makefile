# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TUNE_STAMP := $(VENV)/.installed-tune

.PHONY: test demo lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# the tests run the Ray Tune integration for real: `make test` adds the `tune` extra (Ray)
$(TUNE_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[tune]'
	touch $(TUNE_STAMP)

test: $(STAMP) $(TUNE_STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) examples/02_compare_event_vs_dense.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/event_vs_dense.py

clean:
	rm -rf $(VENV) results build *.egg-info
