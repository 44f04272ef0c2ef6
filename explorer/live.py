"""The engine behind the live view: on a CPU, llama.cpp when it is installed and the base is the default
GGUF (fast at batch 1, explorer/llamacpp.py); else PyTorch with every adapter attached (generate.py).

Both answer `stream(checkpoint, prompt, max_new_tokens)` greedily and serialise requests, so any
number of dashboard sessions can share one engine. `checkpoint` is an id, or a weighted mix of trained
adapters {id: w} (an interpolated model), decoded with its exact blend merged into one adapter
(interpolate.SettledBlends). EXPLORER_LIVE_BACKEND=torch|llamacpp forces one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping

import torch

from . import llamacpp
from .config import ConfigError, ModelConfig
from .generate import Backend, adapter_name, stream
from .interpolate import SettledBlends, blend
from .model import DEFAULT_BASE, Base, pick_device

BACKENDS = ("auto", *Backend)  # what EXPLORER_LIVE_BACKEND may name


class TorchLive:
    """The PyTorch live engine: every adapter attached; a mix of several is decoded with its exact blend
    (interpolate.SettledBlends), built once under the model lock."""

    kind = Backend.TORCH
    backend = kind.label  # shown to people; compare `kind`

    def __init__(self, base: Base):
        self.base = base
        model = base.model
        self.blends = SettledBlends(lambda name, weights: blend(model, weights, adapter_name(name)),
                                    lambda name: model.delete_adapter(adapter_name(name)))

    def stream(self, checkpoint: str | Mapping[str, float], prompt: str, max_new_tokens: int = 128,
               system: str | None = None, min_new_tokens: int = 0) -> Iterator[str]:
        return stream(self.base, checkpoint, prompt, max_new_tokens, system, resolve=self.blends.resolve,
                      min_new_tokens=min_new_tokens)


def choose_backend(cfg: ModelConfig, requested: str | None = None) -> Backend:
    requested = requested or os.environ.get("EXPLORER_LIVE_BACKEND", "auto")
    if requested not in BACKENDS:
        raise ConfigError(f"live backend {requested!r} is not one of {', '.join(BACKENDS)} "
                          "(set EXPLORER_LIVE_BACKEND accordingly)")
    if requested == Backend.LLAMACPP:
        if not llamacpp.available():
            raise ConfigError("the llama.cpp live backend needs llama-cpp-python: run `make fast-live` "
                              "(compiles it, 10-20 min), or set EXPLORER_LIVE_BACKEND=torch")
        if cfg.base_model != DEFAULT_BASE:
            raise ConfigError(f"the llama.cpp live backend serves the default GGUF base only, not "
                              f"{cfg.base_model!r}; set EXPLORER_LIVE_BACKEND=torch")
        return Backend.LLAMACPP
    if requested == "auto":  # llama.cpp is built for the CPU here; on a GPU, PyTorch (CUDA, bf16) serves
        cpu = pick_device(cfg).type == "cpu"
        fast = cpu and llamacpp.available() and cfg.base_model == DEFAULT_BASE
        return Backend.LLAMACPP if fast else Backend.TORCH
    return Backend.TORCH


def load(checkpoints: Path, cfg: ModelConfig, backend: str | None = None, progress: bool = False):
    """The base model plus every finished adapter under `checkpoints`, ready to stream from."""
    from .checkpoints import discover, finished_runs
    from .evaluate import attach_adapters
    from .model import find_gguf, fingerprint_of, load_base, provision

    if choose_backend(cfg, backend) is Backend.TORCH:
        base = load_base(cfg, progress=progress)
        return TorchLive(attach_adapters(base, discover(checkpoints, base)))  # full fine-tunes left out
    from transformers import AutoConfig, AutoTokenizer

    # llama.cpp and torch share one OpenMP runtime (both load libgomp.so.1). Once torch has started its
    # own worker threads there are more OpenMP threads than cores, and libgomp then cuts its spin-waits
    # short: llama.cpp's per-operation barriers start sleeping and decoding slows markedly
    # (bench/NOTES.md). What torch still does in a process serving the live
    # view (the embedding judge on one answer) is tiny, so it runs on one thread there.
    torch.set_num_threads(1)
    path = provision(cfg, progress=progress)
    adapters = {d.name: (d, m["adapter_sha256"]) for d, m in finished_runs(checkpoints, fingerprint_of(path))
                if m.get("weights") != "full"}  # the live view serves adapters (models.live_checkpoints)
    max_context = cfg.max_context or int(AutoConfig.from_pretrained(path).max_position_embeddings)
    return llamacpp.load_engine(find_gguf(), adapters, AutoTokenizer.from_pretrained(path), max_context,
                                progress=progress)
