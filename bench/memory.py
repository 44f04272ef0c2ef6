"""Resident memory of the live view (`--only memory`): a fresh process holding the live engine as the
dashboard loads it (base model and every shipped adapter), across 50 live generations cycling through
every checkpoint; it must not grow. Warm-up: every checkpoint once, so first-use buffers are in the baseline."""
from __future__ import annotations

import os

from bench.common import BASE, PROMPT, live_engine

TARGETS = {"rss_growth_mb": "~ 0"}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure() -> dict:
    """In the bench's own fresh process (bench/run.py), which has loaded nothing else."""
    import gc
    import resource

    engine = live_engine()
    ids = engine.checkpoints if hasattr(engine, "checkpoints") else [BASE] + sorted(engine.base.model.peft_config)
    for ck in ids:
        "".join(engine.stream(ck, PROMPT, 16))
    gc.collect()
    start = rss_mb()
    for k in range(50):
        "".join(engine.stream(ids[k % len(ids)], PROMPT, 16))
    gc.collect()
    end = rss_mb()
    return {"rss_backend": engine.backend, "rss_loaded_mb": start, "rss_after_50_mb": end,
            "rss_growth_mb": end - start, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

