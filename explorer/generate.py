"""Generation engine: batched greedy decoding for evaluation, streaming for the live view.

One base model, LoRA adapters switched by name (never a model reload per checkpoint). Prompts are
bucketed by length so that left padding wastes little compute, and decoded with the KV cache.
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Iterator, Mapping, Sequence

import torch

from .checkpoints import BASE_ID
from .config import ConfigError
from .model import Base, chat_prompt


class Backend(StrEnum):
    """The engines that can serve the live view, by identity: this module's (PyTorch, the reference behind
    every stored number) and llama.cpp's (llamacpp.py, faster at batch 1 on a CPU). The value is what
    EXPLORER_LIVE_BACKEND names; `label` is what a person reads."""
    LLAMACPP = "llamacpp"
    TORCH = "torch"

    @property
    def label(self) -> str:
        return {Backend.LLAMACPP: "llama.cpp", Backend.TORCH: "PyTorch"}[self]


@dataclass(frozen=True)
class Generation:
    prompt: str
    response: str
    n_tokens: int
    seconds: float


class PromptTooLong(ConfigError):
    pass


def encode_chat(base: Base, prompts: Sequence[str], system: str | None, max_new_tokens: int,
                prefills: Sequence[str] | None = None):
    """Chat-format and tokenise; a prefill opens the assistant turn (the reply continues from it)."""
    texts = [chat_prompt(base.tokenizer, p, system) + (prefills[i] if prefills else "") for i, p in enumerate(prompts)]
    enc = base.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    budget = base.max_context - max_new_tokens
    if enc["input_ids"].shape[1] > budget:
        lengths = enc["attention_mask"].sum(1).tolist()
        worst = max(range(len(lengths)), key=lengths.__getitem__)
        raise PromptTooLong(f"the prompt {prompts[worst][:60]!r}… is {lengths[worst]} tokens with its chat template; "
                            f"the context window leaves {budget} for the prompt ({base.max_context} minus "
                            f"{max_new_tokens} new tokens): shorten it")
    return {k: v.to(base.device) for k, v in enc.items()}


def adapter_name(checkpoint: str) -> str:
    """PEFT names adapters as module attributes: no dots ('s1-h0.3' → 's1-h0_3')."""
    return checkpoint.replace(".", "_")


_ADAPTER_LAYERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _adapter_layers(model) -> list:
    """PEFT's adapter-carrying layers of a model, found once (a module walk costs milliseconds)."""
    layers = _ADAPTER_LAYERS.get(model)
    if layers is None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = _ADAPTER_LAYERS[model] = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    return layers


# layer → {adapter: its own α/r}, for the adapters activate() has scaled and not yet restored
_UNIT_SCALING: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def activate(model, checkpoint: str | Mapping[str, float]) -> None:
    """Point a PeftModel at one adapter (or at the bare base for BASE_ID), or at a weighted mix of adapters
    {checkpoint: w} for inference.

    A mix is the exact interpolation Σ w_i ΔW_i (interpolate.py): every LoRA layer sums its active
    adapters' outputs, each times its scaling, so the mix is the corners active together with scalings
    w_i·α_i/r_i. Nothing is merged or copied: moving a slider only sets scalings.

    PEFT's own set_adapter/enable_adapter_layers also flip requires_grad on every weight of every
    adapter in every layer: ~80 ms with nine adapters, for nothing at inference. Each LoRA layer's
    forward reads only two flags (disabled, active adapters) and the scalings, so we set just those: well
    under 1 ms. tests/test_reliability.py checks the outputs equal PEFT's own switching."""
    weights = dict(checkpoint) if isinstance(checkpoint, Mapping) else {checkpoint: 1.0}
    disabled = weights == {BASE_ID: 1.0}
    if not hasattr(model, "peft_config"):
        if not disabled:
            raise ConfigError(f"checkpoint {checkpoint!r} requested but no adapters are loaded")
        return
    names = {adapter_name(c): w for c, w in weights.items()}
    if not disabled and (unknown := [c for c, n in zip(weights, names) if n not in model.peft_config]):
        raise ConfigError(f"unknown checkpoint {', '.join(map(repr, unknown))}; loaded: {', '.join(model.peft_config)}")
    for layer in _adapter_layers(model):
        layer._disable_adapters = disabled
        unit = _UNIT_SCALING.setdefault(layer, {})
        for n in [n for n in unit if n not in names or disabled]:  # a mix's scalings last while it is active
            if n in layer.scaling:
                layer.scaling[n] = unit[n]
            del unit[n]
        if disabled:
            continue
        layer._active_adapter = list(names)
        for n, w in names.items():
            if n in layer.scaling:
                layer.scaling[n] = unit.setdefault(n, layer.scaling[n]) * w
    if not disabled:
        model.base_model.active_adapter = next(iter(names))


@torch.inference_mode()
def generate_batch(base: Base, prompts: Sequence[str], max_new_tokens: int, system: str | None = None,
                   prefills: Sequence[str] | None = None) -> list[Generation]:
    """Greedy-decode one padded batch. Returns per-prompt text and token counts."""
    t = time.perf_counter()
    enc = encode_chat(base, prompts, system, max_new_tokens, prefills)
    out = base.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                              pad_token_id=base.tokenizer.pad_token_id)
    return _answers(base, prompts, out[:, enc["input_ids"].shape[1]:], time.perf_counter() - t)


@torch.inference_mode()
def sample_answers(base: Base, prompts: Sequence[str], k: int, max_new_tokens: int, temperature: float,
                   seed: int) -> list[list[Generation]]:
    """k independent answers to each prompt drawn from the model's own distribution: ancestral sampling
    at `temperature`, with no top-k or top-p truncation (at T = 1 each answer is a draw from p_θ(· | u),
    the distribution the constraint E_u[p_θ(unsafe | u)] ≤ ε is about). All len(prompts)·k answers decode
    as one batch, each prompt encoded once and shared by its k rows; `seed` makes them reproducible."""
    t = time.perf_counter()
    torch.manual_seed(seed)
    enc = encode_chat(base, prompts, None, max_new_tokens)
    out = base.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                              top_k=0, top_p=1.0, num_return_sequences=k, pad_token_id=base.tokenizer.pad_token_id)
    flat = _answers(base, [p for p in prompts for _ in range(k)], out[:, enc["input_ids"].shape[1]:],
                    time.perf_counter() - t)  # rows: prompt 0's k answers, then prompt 1's, ...
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def _answers(base: Base, prompts: Sequence[str], new_tokens: torch.Tensor, seconds: float) -> list[Generation]:
    """Decode each row of new tokens (B, T) up to its first end-of-turn token."""
    eos = {base.tokenizer.eos_token_id, base.tokenizer.pad_token_id}
    results = []
    for p, row in zip(prompts, new_tokens.tolist()):
        n = next((i for i, tok in enumerate(row) if tok in eos), len(row))
        results.append(Generation(p, base.tokenizer.decode(row[:n], skip_special_tokens=True).strip(), n,
                                  seconds / len(prompts)))
    return results


def buckets(prompts: Sequence[str], tokenizer, batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar token length (less padding, fewer wasted FLOPs)."""
    order = sorted(range(len(prompts)), key=lambda i: len(tokenizer(prompts[i])["input_ids"]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate_many(base: Base, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 32,
                  system: str | None = None, progress=None, prefills: Sequence[str] | None = None) -> list[Generation]:
    """Batched generation over any number of prompts, results in input order."""
    results: list[Generation | None] = [None] * len(prompts)
    for idx in buckets(prompts, base.tokenizer, batch_size):
        batch_prefills = [prefills[i] for i in idx] if prefills else None
        for i, g in zip(idx, generate_batch(base, [prompts[i] for i in idx], max_new_tokens, system, batch_prefills)):
            results[i] = g
        if progress is not None:
            progress.update(len(idx))
    return results  # type: ignore[return-value]


# The live view shares one model between sessions: the adapter switch and the decode must happen
# together, or one session's tokens could come from another session's adapter.
MODEL_LOCK = threading.Lock()


def stream(base: Base, checkpoint: str | Mapping[str, float], prompt: str, max_new_tokens: int = 128,
           system: str | None = None, resolve: Callable | None = None, **generate_kwargs) -> Iterator[str]:
    """Yield decoded text pieces for one prompt from one checkpoint or weighted mix (activate), greedy, KV cache.
    `resolve`, run under the model lock, maps the request to what the model decodes with (a live engine's
    merged blend of a mix: interpolate.SettledBlends)."""
    from transformers import TextIteratorStreamer

    enc = encode_chat(base, [prompt], system, max_new_tokens)
    streamer = TextIteratorStreamer(base.tokenizer, skip_prompt=True, skip_special_tokens=True)
    error: list[BaseException] = []

    def run():
        try:
            with MODEL_LOCK, torch.inference_mode():
                activate(base.model, resolve(checkpoint) if resolve else checkpoint)
                base.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                                    pad_token_id=base.tokenizer.pad_token_id, **generate_kwargs)
        except BaseException as e:  # surfaced to the caller below
            error.append(e)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if error:
        raise error[0]


def generate_one(base: Base, checkpoint: str, prompt: str, max_new_tokens: int = 128) -> str:
    return "".join(stream(base, checkpoint, prompt, max_new_tokens)).strip()
