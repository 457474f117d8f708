# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TUNE_STAMP := $(VENV)/.installed-tune
SINABS_STAMP := $(VENV)/.installed-sinabs

.PHONY: test demo lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# neurobench pulls a torchaudio built for another torch (none exists for 2.13); it cannot load,
	# and a torchaudio that is present but broken breaks `import peft` / `import transformers`.
	# Nothing here needs audio transforms: remove it when it does not import.
	$(PY) -c "import torchaudio" 2>/dev/null || $(PY) -m pip uninstall -y -q torchaudio
	touch $(STAMP)

# the tests run the Ray Tune integration for real: `make test` adds the `tune` extra (Ray)
$(TUNE_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[tune]'
	touch $(TUNE_STAMP)

# sinabs's Speck mapping code, for tests/conv/test_sinabs_agreement.py: without its declared
# dependencies (they would pin nir<=1.0.4 and pull samna, whose PyPI wheel is a stub); the fit
# check it reads is plain Python over torch
$(SINABS_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps sinabs==3.1.3 pbr==7.1.3
	touch $(SINABS_STAMP)

test: $(STAMP) $(TUNE_STAMP) $(SINABS_STAMP)
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
