"""What every bench shares: the machine it ran on, timing, the live-view prompt, a child interpreter per
measurement, and the results file."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from explorer.atomic import write_text
from explorer.config import DEFAULT_RECIPE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
PROMPT = "Explain how a refrigerator keeps food cold, step by step."
BASE = "base"
LIVE_CHECKPOINT, LIVE_TOKENS = "s1-h0.1", 128  # the live view's figures: this checkpoint, this many tokens


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def timed(fn, repeat: int = 1) -> float:
    """Seconds of the fastest of `repeat` calls of fn()."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def stream_timing(engine, checkpoint, n_new: int) -> tuple[float, float]:
    """(seconds for n_new tokens, seconds to the first text piece) of a live engine, best of 2."""
    best, first = float("inf"), float("inf")
    for _ in range(2):
        t = time.perf_counter()
        got = None
        for piece in engine.stream(checkpoint, PROMPT, n_new, min_new_tokens=n_new):
            if got is None and piece:
                got = time.perf_counter() - t
        best, first = min(best, time.perf_counter() - t), min(first, got if got is not None else float("inf"))
    return best, first


def live_engine(backend: str | None = None):
    """The live view's engine over the shipped sweep, loaded as the dashboard loads it."""
    from explorer import live
    from explorer.config import load_recipe

    recipe = load_recipe(DEFAULT_RECIPE)
    return live.load(ROOT / "checkpoints" / recipe.sweep.name, recipe.model, backend=backend)


def eval_engine():
    """(recipe, the evaluation engine with every shipped adapter attached, their infos)."""
    from explorer.checkpoints import discover, sweep_dir
    from explorer.config import load_recipe
    from explorer.evaluate import attach_adapters
    from explorer.model import load_base

    recipe = load_recipe(DEFAULT_RECIPE)
    base = load_base(recipe.model, progress=False)
    infos = discover(sweep_dir(recipe.sweep.name), base)
    return recipe, attach_adapters(base, infos), infos


def in_child(module: str, function: str, *args) -> dict:
    """bench.<module>.<function>(*args) in a fresh interpreter; returns the dict it returns. Every bench runs
    in a process of its own: torch and llama.cpp share one OpenMP runtime, and loading the llama.cpp engine
    makes torch single-threaded (explorer/live.py), which must not leak into the next figure."""
    code = (f"import json; from bench.{module} import {function}; "
            f"print('RESULT ' + json.dumps({function}(*{args!r}), default=float))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"bench child failed: {code}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def write_results(res: dict) -> None:
    """bench/results.json, stamped with the time and the machine, replaced in one rename."""
    res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res["machine"] = machine()
    write_text(RESULTS, json.dumps(res, indent=1, default=float))
