"""Live generation through llama.cpp: the same base GGUF that the PyTorch model is dequantised from,
with each checkpoint's LoRA converted once into a GGUF adapter and switched per request.

Why: at batch 1 a 135M model on a CPU is bound by per-operation overhead, not arithmetic; PyTorch with
PEFT pays that overhead ~400 times per token, llama.cpp runs the whole graph in C++ on 4-bit weights
(bench/NOTES.md has the figures). Switching a checkpoint is a pointer swap inside llama.cpp, never a
reload. The PyTorch engine (generate.py) stays the reference: evaluation, training and the stored
numbers all come from it; this engine only serves the live view, and only when `llama-cpp-python`
is installed (`make setup` tries to build it; without it the live view falls back to PyTorch).
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import queue
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from .atomic import atomic_file, stale_temps
from .config import ConfigError
from .checkpoints import ADAPTER_FILE, BASE_ID
from .generate import Backend, PromptTooLong
from .model import CACHE_DIR, chat_prompt

_DONE = object()  # end of one request's pieces
ADAPTER_CACHE = CACHE_DIR / "gguf-lora"
CONVERTER_VERSION = "1"  # bump when the conversion changes: cached adapters are keyed on it
# PEFT module name → llama.cpp tensor name (convert_hf_to_gguf's mapping for llama-family models)
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
PEFT_KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def rope_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores the rows of W_q and W_k interleaved per head for its RoPE kernel (the permute in
    convert_hf_to_gguf.py). LoRA's B writes those rows, so it is permuted the same way; A is untouched."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@lru_cache(maxsize=4)
def _heads(gguf_path: Path) -> tuple[str, int, int]:
    """(architecture, query heads, key/value heads) of the base GGUF (parsing it takes ~3 s: once)."""
    import gguf

    fields = gguf.GGUFReader(str(gguf_path)).fields
    arch = fields["general.architecture"].contents()
    return arch, int(fields[f"{arch}.attention.head_count"].contents()), \
        int(fields[f"{arch}.attention.head_count_kv"].contents())


def _lora_tensors(adapter_dir: Path, base_gguf: Path) -> tuple[dict[str, np.ndarray], float, int]:
    """A PEFT LoRA adapter's tensors under their llama.cpp names (LoRA-B rows of W_q and W_k permuted to
    llama.cpp's RoPE layout), with its α as llama.cpp reads it and its rank r."""
    from safetensors.numpy import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("use_dora"):
        raise ConfigError(f"{adapter_dir}: DoRA adapters cannot be served by llama.cpp; set the live backend to torch")
    # llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r): fold the difference into alpha
    alpha = float(cfg["lora_alpha"]) * (cfg["r"] ** 0.5 if cfg.get("use_rslora") else 1.0)
    _, n_head, n_kv = _heads(base_gguf)
    tensors = load_file(str(adapter_dir / ADAPTER_FILE))
    out = {}
    for key in sorted(tensors):
        m = PEFT_KEY.match(key)
        if m is None or m.group(2) not in GGUF_NAMES:
            raise ConfigError(f"{adapter_dir}: adapter tensor {key!r} has no llama.cpp equivalent; "
                              "set the live backend to torch")
        layer, module, ab = m.groups()
        w = tensors[key].astype(np.float32)
        if ab == "B" and module in ("q_proj", "k_proj"):
            w = rope_permute(w, n_head if module == "q_proj" else n_kv)
        out[f"blk.{layer}.{GGUF_NAMES[module]}.weight.lora_{ab.lower()}"] = w
    return out, alpha, int(cfg["r"])


def _write_adapter(tensors: dict[str, np.ndarray], alpha: float, base_gguf: Path, dest: Path) -> Path:
    """Write LoRA tensors as a llama.cpp GGUF adapter, to a temp file renamed into place: a killed
    conversion never leaves a loadable file."""
    import gguf

    arch, _, _ = _heads(base_gguf)
    with atomic_file(dest) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name in sorted(tensors):
            writer.add_tensor(name, np.ascontiguousarray(tensors[name]))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return dest


def convert_adapter(adapter_dir: Path, base_gguf: Path, dest: Path) -> Path:
    """Write a PEFT LoRA adapter (ADAPTER_FILE + adapter_config.json) as a llama.cpp GGUF adapter."""
    tensors, alpha, _ = _lora_tensors(adapter_dir, base_gguf)
    return _write_adapter(tensors, alpha, base_gguf, dest)


def convert_blend(parts: Mapping[Path, float], base_gguf: Path, dest: Path) -> Path:
    """The exact blend Σ w_i ΔW_i of several PEFT adapters {adapter dir: w_i} as one llama.cpp adapter: each
    A_i scaled by w_i·α_i/r_i, the A stacked and the B side by side (rank Σ r_i), α = Σ r_i so that
    llama.cpp's α/rank is 1. The same sum the corners active at scales w_i give, one LoRA product per layer."""
    read = [(_lora_tensors(Path(d), base_gguf), w) for d, w in parts.items()]
    names = set(read[0][0][0])
    for (tensors, _, _), _w in read[1:]:
        if set(tensors) != names:
            raise ConfigError(f"adapters {', '.join(Path(d).name for d in parts)} adapt different layers and "
                              "cannot be blended")
    out = {}
    for name in names:
        if name.endswith("lora_a"):  # (r, in): stacked along the rank, each scaled by its w·α/r
            out[name] = np.concatenate([w * alpha / r * t[name] for (t, alpha, r), w in read], axis=0)
        else:  # (out, r): side by side
            out[name] = np.concatenate([t[name] for (t, _, _), _w in read], axis=1)
    return _write_adapter(out, float(sum(r for (_, _, r), _w in read)), base_gguf, dest)


def cached_adapter(adapter_dir: Path, digest: str, base_gguf: Path) -> Path:
    """The GGUF form of one adapter, converted on first use and keyed on the adapter's content digest."""
    dest = ADAPTER_CACHE / f"{adapter_dir.name}-{digest[:16]}-v{CONVERTER_VERSION}.gguf"
    if not dest.is_file():
        for stale in stale_temps(dest):
            stale.unlink(missing_ok=True)
        convert_adapter(adapter_dir, base_gguf, dest)
    return dest


class LlamaCppEngine:
    """One llama.cpp model and context shared by every dashboard session. A request holds the lock from
    adapter switch to last token, and starts from an empty KV cache: llama-cpp-python would otherwise
    reuse the cached prompt prefix even when it was computed under another checkpoint's adapter."""

    kind = Backend.LLAMACPP
    backend = kind.label  # shown to people; compare `kind`

    def __init__(self, base_gguf: Path, adapters: dict[str, Path], tokenizer, max_context: int,
                 n_threads: int | None = None, sources: dict[str, Path] | None = None):
        """adapters: id → GGUF adapter; sources: id → its PEFT adapter directory (what a blend is built from)."""
        from llama_cpp import Llama
        from llama_cpp import llama_cpp as C

        from .interpolate import SettledBlends

        self._C = C
        self.tokenizer = tokenizer
        self.max_context = max_context
        self.llm = Llama(model_path=str(base_gguf), n_ctx=max_context, n_batch=512,
                         n_threads=n_threads or os.cpu_count(), verbose=False)
        self.lock = threading.Lock()
        self._adapters: dict[str, object] = {}
        for cid, path in adapters.items():
            handle = C.llama_adapter_lora_init(self.llm.model, str(path).encode())
            if not handle:
                raise ConfigError(f"llama.cpp could not load the adapter {path} for {cid}; delete it to reconvert, "
                                  "or set EXPLORER_LIVE_BACKEND=torch")
            self._adapters[cid] = handle
        self._active: tuple | None = None  # the (checkpoint, scale) pairs the context applies
        self._base_gguf, self._sources = base_gguf, dict(sources or {})
        self._blend_handles: dict[str, object] = {}  # a mix's merged adapter, by blend name
        self.blends = SettledBlends(self._build_blend, self._free_blend)
        # one long-lived decoding thread serves every session in arrival order (a thread per request
        # would leave glibc a malloc arena per thread: resident memory crept up ~40 MB over 50 requests)
        self._requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, name="llama.cpp decode", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job, replies = self._requests.get()
            try:
                job()
                replies.put(_DONE)
            except BaseException as e:  # handed to the session that asked
                replies.put(e)

    @property
    def checkpoints(self) -> list[str]:
        return [BASE_ID, *self._adapters]

    def activate(self, checkpoint: str | Mapping[str, float]) -> None:
        """Point the context at one adapter at scale 1 (none for the base), or at a weighted mix
        {checkpoint: w}: llama.cpp adds each adapter's update times its scale, the exact interpolation
        Σ w_i ΔW_i, so moving a slider only sets scales. A request (stream) decodes a mix of several
        corners with its merged blend instead (self.blends: one LoRA product per layer, not one per
        corner). Call with the lock held."""
        weights = dict(checkpoint) if isinstance(checkpoint, Mapping) else {checkpoint: 1.0}
        key = tuple(sorted(weights.items()))
        if key == self._active:
            return
        C = self._C
        loaded = {**self._adapters, **self._blend_handles}
        if weights == {BASE_ID: 1.0}:
            C.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
        elif unknown := [c for c in weights if c not in loaded]:
            raise ConfigError(f"unknown checkpoint {', '.join(map(repr, unknown))}; loaded: {', '.join(self.checkpoints)}")
        else:
            n = len(weights)
            handles = (C.llama_adapter_lora_p_ctypes * n)(*(loaded[c] for c in weights))
            C.llama_set_adapters_lora(self.llm.ctx, handles, n, (ctypes.c_float * n)(*weights.values()))
        self._active = key

    def _build_blend(self, name: str, weights: dict[str, float]) -> None:
        """Load a mix's exact blend as one adapter (convert_blend), from a temp file removed once loaded."""
        if missing := [c for c in weights if c not in self._sources]:
            raise ConfigError(f"no adapter directory for {', '.join(map(repr, missing))}; it cannot be blended")
        path = convert_blend({self._sources[c]: w for c, w in weights.items()}, self._base_gguf,
                             ADAPTER_CACHE / f"{name}-{os.getpid()}.gguf")
        try:
            handle = self._C.llama_adapter_lora_init(self.llm.model, str(path).encode())
        finally:
            path.unlink(missing_ok=True)
        if not handle:
            raise ConfigError(f"llama.cpp could not load the blend of {', '.join(weights)}; "
                              "set EXPLORER_LIVE_BACKEND=torch")
        self._blend_handles[name] = handle

    def _free_blend(self, name: str) -> None:
        if self._active and any(c == name for c, _ in self._active):
            self._C.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
            self._active = None
        self._C.llama_adapter_lora_free(self._blend_handles.pop(name))

    def encode(self, prompt: str, system: str | None, max_new_tokens: int) -> list[int]:
        ids = self.tokenizer(chat_prompt(self.tokenizer, prompt, system), add_special_tokens=False)["input_ids"]
        budget = self.max_context - max_new_tokens
        if len(ids) > budget:
            raise PromptTooLong(f"prompt 0 is {len(ids)} tokens; the context window leaves {budget} for the prompt "
                                f"({self.max_context} minus {max_new_tokens} new tokens): shorten it")
        return ids

    def _decode(self, checkpoint: str | Mapping[str, float], ids: list[int], max_new_tokens: int, min_new_tokens: int,
                emit) -> None:
        stop = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        with self.lock:
            self.activate(self.blends.resolve(checkpoint))  # a mix of several corners: its merged blend
            self.llm.reset()  # n_tokens = 0: no prefix reuse, the KV cache is overwritten from position 0
            out: list[int] = []
            for tok in self.llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                if tok in stop and len(out) >= min_new_tokens:
                    break
                out.append(tok)
                emit(out)
                if len(out) >= max_new_tokens:
                    break

    def stream(self, checkpoint: str | Mapping[str, float], prompt: str, max_new_tokens: int = 128,
               system: str | None = None, min_new_tokens: int = 0) -> Iterator[str]:
        """Yield text pieces as they decode (greedy). Decoding runs on the engine's own thread, so a session
        that stops reading (the user leaves the page) never keeps the model from the others."""
        ids = self.encode(prompt, system, max_new_tokens)
        replies: queue.Queue = queue.Queue()
        shown = [""]

        def emit(out: list[int]) -> None:
            text = self.tokenizer.decode(out, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                replies.put(text[len(shown[0]):])
                shown[0] = text

        self._requests.put((lambda: self._decode(checkpoint, ids, max_new_tokens, min_new_tokens, emit), replies))
        while (item := replies.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item


def load_engine(base_gguf: Path, checkpoints: dict[str, tuple[Path, str]], tokenizer, max_context: int,
                progress: bool = False) -> LlamaCppEngine:
    """checkpoints: id → (adapter directory, content digest). Converts what is not cached yet."""
    items = checkpoints.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="adapters → GGUF", unit="adapter")
    adapters = {cid: cached_adapter(d, digest, base_gguf) for cid, (d, digest) in items}
    return LlamaCppEngine(base_gguf, adapters, tokenizer, max_context,
                          sources={cid: d for cid, (d, _) in checkpoints.items()})
