"""Checkpoint switch in the live view (`--only switch`): an adapter swap against reloading the model from
the GGUF file and from the safetensors cache (reloads first: loading the llama.cpp engine makes torch
single-threaded)."""
from __future__ import annotations

import statistics
import time

from bench.common import BASE, live_engine

TARGETS = {"switch_speedup_vs_gguf": ">= 100", "switch_speedup_vs_cache": ">= 3"}


def swap_seconds(engine, backend: str) -> float:
    """Median seconds of 100 switches cycling through the base and every adapter."""
    from explorer.generate import activate

    if backend == "llamacpp":
        ids, switch = engine.checkpoints, engine.activate
    else:
        ids = [BASE] + sorted(engine.base.model.peft_config)
        switch = (lambda ck, m=engine.base.model: activate(m, ck))
    times = []
    for k in range(100):
        t = time.perf_counter()
        switch(ids[k % len(ids)])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure() -> dict:
    from explorer import live
    from explorer.config import DEFAULT_RECIPE, load_recipe
    from explorer.model import ModelConfig, timed_load

    t_cache = min(timed_load(ModelConfig()) for _ in range(2))
    t_gguf = timed_load(ModelConfig(), from_gguf=True)
    backends = ["torch"] + (["llamacpp"] if live.choose_backend(load_recipe(DEFAULT_RECIPE).model) == "llamacpp" else [])
    res = {f"switch_{b}_swap_s": swap_seconds(live_engine(b), b) for b in backends}
    t_swap = res[f"switch_{backends[-1]}_swap_s"]
    res.update(switch_swap_s=t_swap, switch_cache_reload_s=t_cache, switch_gguf_reload_s=t_gguf,
               switch_speedup_vs_cache=t_cache / t_swap, switch_speedup_vs_gguf=t_gguf / t_swap)
    return res
