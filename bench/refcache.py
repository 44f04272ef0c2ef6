"""Reference log-prob cache (`--only refcache`): one sweep point's 30 training steps with the reference
log-probs read from the cache against recomputing them; the training step's speed on the way."""
from __future__ import annotations

import statistics
import time

from bench.common import DEFAULT_RECIPE, timed

TARGETS = {"refcache_speedup": ">= 1.3"}


def step_seconds(base, enc, ref, recipe, steps: int = 3) -> tuple[float, float]:
    """(median seconds of one training step, tokens per second) on a fresh LoRA adapter."""
    from peft import LoraConfig, get_peft_model

    from explorer.train import train_step_losses

    lc = recipe.lora
    model = get_peft_model(base.model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, target_modules=list(lc.target_modules)))
    times, toks = [], 0
    for _ in range(steps):
        t = time.perf_counter()
        terms, n = train_step_losses(model, enc, ref, [0, 1, 2, 3], [0, 1, 2, 3], [0, 1], recipe, 1.0, 1.0,
                                     base.tokenizer.pad_token_id, base.device)
        terms.total.backward()
        times.append(time.perf_counter() - t)
        toks += n
    return statistics.median(times), toks / sum(times)


def measure() -> dict:
    from explorer.config import load_recipe
    from explorer.model import load_base
    from explorer.pairs import cached_pairs
    from explorer.suites import load_prompts
    from explorer.train import encode_pairs, reference_logps

    recipe = load_recipe(DEFAULT_RECIPE)
    base = load_base(recipe.model, training=True, progress=False)
    ps = cached_pairs(base, load_prompts(), recipe, progress=False)
    enc = encode_pairs(base.tokenizer, ps, recipe)
    ref = lambda **kw: reference_logps(base, enc, ps.fingerprint, dtype_setting=recipe.model.dtype, **kw)  # noqa: E731
    t_cached = timed(ref, 3)
    t_recompute = timed(lambda: ref(use_cache=False))
    step, tokens_per_s = step_seconds(base, enc, ref(), recipe)
    steps = recipe.train.steps  # per run: `steps` training steps plus either a cache read or a recomputation
    return {"refcache_cached_s": t_cached, "refcache_recompute_s": t_recompute, "train_step_s": step,
            "train_tokens_per_s": tokens_per_s,
            "refcache_speedup": (steps * step + t_recompute) / (steps * step + t_cached)}
