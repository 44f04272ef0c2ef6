# Two commands for a new user: `make run` (set up + open the dashboard) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench sweep eval report clean-cache fast-live

$(STAMP): requirements.txt requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -m explorer setup

run: setup
	$(PY) -m explorer app

test: setup
	$(PY) -m pytest

# Optional: build llama.cpp (llama-cpp-python) for the live view's fast backend; the dashboard uses it
# automatically once installed. Compiles from source: ~10-20 minutes on 2 cores, once.
fast-live: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install --quiet -r requirements-live.txt

bench: setup
	$(PY) -m explorer bench

# Regenerate the shipped sweep (resumable: rerun after a kill), evaluate it, score the judges.
sweep: setup
	$(PY) -m explorer sweep --recipe configs/default.yaml
	$(PY) -m explorer eval --recipe configs/default.yaml
	$(PY) -m explorer compact
	$(PY) -m explorer judges
	$(PY) -m explorer report

report: setup
	$(PY) -m explorer report

clean-cache:
	rm -rf .cache
