"""Interpolated points in the live view (`--only interp`): the cost of moving the slider on each engine, of
building a new point's merged blend, and the live engine's tokens/s at an in-between point against a
trained one, measured side by side (bench/NOTES.md, "Interpolated points in the live view")."""
from __future__ import annotations

import random
import statistics
import time

from bench.common import LIVE_CHECKPOINT, LIVE_TOKENS, in_child, live_engine, stream_timing

TARGETS = {"interp_switch_ms": "<= 10 (llama.cpp)", "interp_live_vs_single": ">= 0.8"}
# An in-between model of the live view: four trained corners of the shipped sweep, equal weights
INTERP_MIX = {"s1-h0": 0.25, "s1-h0.1": 0.25, "s3-h0": 0.25, "s3-h0.1": 0.25}


def _median_ms(fn, args: list) -> float:
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def child(backend: str) -> dict:
    """One engine at an interpolated point: moving to a new point (new corner scales, the slider's whole
    cost), building that point's merged blend (once, at its first answer), and tokens/s from the blend and
    from the four corners active at their scales, against one trained adapter."""
    from explorer.generate import MODEL_LOCK, activate

    engine = live_engine(backend)
    move = engine.activate if backend == "llamacpp" else (lambda mix: activate(engine.base.model, mix))
    rng = random.Random(0)
    weights = [[rng.random() for _ in INTERP_MIX] for _ in range(100)]
    switch_ms = _median_ms(move, [{c: x / sum(w) for c, x in zip(INTERP_MIX, w)} for w in weights])
    lock = engine.lock if backend == "llamacpp" else MODEL_LOCK

    def build(mix):  # a new point's merged blend: built once, when the first answer there is asked for
        with lock:
            engine.blends.resolve(mix)

    build_ms = _median_ms(build, [{c: (k + 1 + i) / 10 for i, c in enumerate(INTERP_MIX)} for k in range(3)])
    single, _ = stream_timing(engine, LIVE_CHECKPOINT, LIVE_TOKENS)
    mixed, _ = stream_timing(engine, INTERP_MIX, LIVE_TOKENS)  # best of two: the blend is built by the first
    settled = engine.blends.resolve
    engine.blends.resolve = lambda checkpoint: checkpoint  # the corners active at their scales, as before
    scaled, _ = stream_timing(engine, INTERP_MIX, LIVE_TOKENS)
    engine.blends.resolve = settled
    return {f"interp_switch_ms_{backend}": switch_ms, f"interp_blend_build_ms_{backend}": build_ms,
            f"interp_tok_s_{backend}": LIVE_TOKENS / mixed, f"single_tok_s_{backend}": LIVE_TOKENS / single,
            f"interp_scaled_tok_s_{backend}": LIVE_TOKENS / scaled}


def measure() -> dict:
    from explorer import llamacpp

    backend = "llamacpp" if llamacpp.available() else "torch"
    res = in_child("interp", "child", "torch")
    if backend == "llamacpp":
        res.update(in_child("interp", "child", "llamacpp"))
    res["interp_backend"] = backend
    res["interp_switch_ms"] = res[f"interp_switch_ms_{backend}"]
    res["interp_live_vs_single"] = res[f"interp_tok_s_{backend}"] / res[f"single_tok_s_{backend}"]
    res["interp_scaled_vs_single"] = res[f"interp_scaled_tok_s_{backend}"] / res[f"single_tok_s_{backend}"]
    return res
