"""Benchmarks: every figure a ratio against a baseline measured in the same run, on the same
inputs (this machine is shared and noisy, so absolute times alone mean little).

    python -m explorer bench [--only live switch eval ui refcache memory]

Prints a table and writes bench/results.json.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from pathlib import Path

import torch

from explorer.config import DEFAULT_RECIPE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
PROMPT = "Explain how a refrigerator keeps food cold, step by step."
BASE = "base"


def _machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _engine():
    from explorer.checkpoints import discover, sweep_dir
    from explorer.config import load_recipe
    from explorer.evaluate import attach_adapters
    from explorer.model import load_base

    recipe = load_recipe(DEFAULT_RECIPE)
    base = load_base(recipe.model, progress=False)
    infos = discover(sweep_dir(recipe.sweep.name), base)
    return recipe, attach_adapters(base, infos), infos


def _child(code: str) -> dict:
    """Run `code` (which prints 'RESULT <json>') in a fresh interpreter and return that dict. Every bench
    runs in a process of its own: torch and llama.cpp share one OpenMP runtime, and loading the llama.cpp
    engine makes torch single-threaded (explorer/live.py), which must not leak into the next figure."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"bench child failed: {code}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _call(name: str) -> dict:
    """bench.run.<name>() in a child process."""
    return _child(f"import json; from bench.run import {name}; print('RESULT ' + json.dumps({name}()))")


def _bench(name: str) -> dict:
    """BENCHES[name] in a child process: the keys it adds to the results."""
    return _child("import json; from bench.run import BENCHES; r = {}; "
                  f"BENCHES[{name!r}](r); print('RESULT ' + json.dumps(r, default=float))")


def _stream_timing(engine, checkpoint, n_new: int) -> tuple[float, float]:
    """(seconds for n_new tokens, seconds to the first text piece), best of 2."""
    best, first = float("inf"), float("inf")
    for _ in range(2):
        t = time.perf_counter()
        got = None
        for piece in engine.stream(checkpoint, PROMPT, n_new, min_new_tokens=n_new):
            if got is None and piece:
                got = time.perf_counter() - t
        best, first = min(best, time.perf_counter() - t), min(first, got if got is not None else float("inf"))
    return best, first


LIVE_CHECKPOINT, LIVE_TOKENS = "s1-h0.1", 128


def live_torch_child() -> dict:
    """Naive fp32 `generate` (no adapters) and the PyTorch live path, torch at its default threads."""
    from transformers import AutoModelForCausalLM

    from explorer import live
    from explorer.config import load_recipe
    from explorer.generate import encode_chat
    from explorer.model import provision

    recipe = load_recipe(DEFAULT_RECIPE)
    engine = live.load(ROOT / "checkpoints" / recipe.sweep.name, recipe.model, backend="torch")
    fp32 = AutoModelForCausalLM.from_pretrained(provision(recipe.model, progress=False), dtype=torch.float32).eval()
    enc = encode_chat(engine.base, [PROMPT], None, LIVE_TOKENS)

    def naive():
        with torch.inference_mode():
            return fp32.generate(**enc, max_new_tokens=LIVE_TOKENS, min_new_tokens=LIVE_TOKENS, do_sample=False,
                                 pad_token_id=engine.base.tokenizer.pad_token_id)

    t_naive = _timed(naive, 2)
    t, first = _stream_timing(engine, LIVE_CHECKPOINT, LIVE_TOKENS)
    return {"live_naive_tok_s": LIVE_TOKENS / t_naive, "live_torch_tok_s": LIVE_TOKENS / t,
            "live_torch_first_token_s": first}


def live_llamacpp_child() -> dict:
    """The llama.cpp live path as the dashboard loads it."""
    from explorer import live
    from explorer.config import load_recipe

    recipe = load_recipe(DEFAULT_RECIPE)
    engine = live.load(ROOT / "checkpoints" / recipe.sweep.name, recipe.model, backend="llamacpp")
    t, first = _stream_timing(engine, LIVE_CHECKPOINT, LIVE_TOKENS)
    return {"live_llamacpp_tok_s": LIVE_TOKENS / t, "live_llamacpp_first_token_s": first}


def llamacpp_bare_child() -> dict:
    """llama.cpp on the same base GGUF and prompt tokens with no adapter, straight through llama-cpp-python
    (own process: a second llama.cpp context in the engine's process would share its OpenMP threads)."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from explorer.config import load_recipe
    from explorer.model import chat_prompt, find_gguf, provision

    recipe = load_recipe(DEFAULT_RECIPE)
    tok = AutoTokenizer.from_pretrained(provision(recipe.model, progress=False))
    ids = tok(chat_prompt(tok, PROMPT), add_special_tokens=False)["input_ids"]
    llm = Llama(model_path=str(find_gguf()), n_ctx=8192, n_batch=512, n_threads=os.cpu_count(), verbose=False)

    def bare():
        llm.reset()
        for k, _ in enumerate(llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)):
            if k + 1 >= LIVE_TOKENS:
                break

    return {"llamacpp_base_tok_s": LIVE_TOKENS / _timed(bare, 2)}


def bench_live(res: dict) -> None:
    """Batch 1, 128 new tokens, a LoRA checkpoint active: the live path (llama.cpp when installed) vs
    naive fp32 `generate` and vs llama.cpp running the bare base GGUF."""
    from explorer import llamacpp

    res.update(_call("live_torch_child"))
    live_name = "llamacpp" if llamacpp.available() else "torch"
    if live_name == "llamacpp":
        res.update(_call("live_llamacpp_child"))
        res.update(_call("llamacpp_bare_child"))
        res["live_vs_llamacpp"] = res["live_llamacpp_tok_s"] / res["llamacpp_base_tok_s"]
        res.pop("llamacpp_note", None)
    else:
        res["live_vs_llamacpp"] = None
        res["llamacpp_note"] = "llama-cpp-python not installed (make fast-live)"
    res["live_backend"] = live_name
    res["live_tok_s"] = res[f"live_{live_name}_tok_s"]
    res["live_speedup"] = res["live_tok_s"] / res["live_naive_tok_s"]
    res["first_token_s"] = res[f"live_{live_name}_first_token_s"]


def bench_switch(res: dict) -> None:
    """Checkpoint switch in the live view: adapter swap vs reloading the model from the GGUF file and
    from the safetensors cache (reloads first: loading the llama.cpp engine makes torch single-threaded)."""
    from explorer import live
    from explorer.config import load_recipe
    from explorer.generate import activate
    from explorer.model import ModelConfig, timed_load

    t_cache = min(timed_load(ModelConfig()) for _ in range(2))
    t_gguf = timed_load(ModelConfig(), from_gguf=True)
    recipe = load_recipe(DEFAULT_RECIPE)
    sweep = ROOT / "checkpoints" / recipe.sweep.name
    engines = {"torch": live.load(sweep, recipe.model, backend="torch")}
    if live.choose_backend(recipe.model) == "llamacpp":
        engines["llamacpp"] = live.load(sweep, recipe.model, backend="llamacpp")
    for name, engine in engines.items():
        if name == "llamacpp":
            ids, switch = engine.checkpoints, engine.activate
        else:
            ids = [BASE] + sorted(engine.base.model.peft_config)
            switch = (lambda ck, m=engine.base.model: activate(m, ck))
        times = []
        for k in range(100):
            t = time.perf_counter()
            switch(ids[k % len(ids)])
            times.append(time.perf_counter() - t)
        res[f"switch_{name}_swap_s"] = statistics.median(times)
    t_swap = res[f"switch_{'llamacpp' if 'llamacpp' in engines else 'torch'}_swap_s"]
    res.update(switch_swap_s=t_swap, switch_cache_reload_s=t_cache, switch_gguf_reload_s=t_gguf,
               switch_speedup_vs_cache=t_cache / t_swap, switch_speedup_vs_gguf=t_gguf / t_swap)


# An in-between model of the live view: four trained corners of the shipped sweep, equal weights
INTERP_MIX = {"s1-h0": 0.25, "s1-h0.1": 0.25, "s3-h0": 0.25, "s3-h0.1": 0.25}


def interp_child(backend: str) -> dict:
    """The live view at an interpolated point on one engine: moving to a new point (new corner scales, the
    slider's whole cost), building that point's merged blend (once, at its first answer), and tokens/s
    from the blend and from the four corners active at their scales, against one trained adapter."""
    import random

    from explorer import live
    from explorer.config import load_recipe
    from explorer.generate import activate

    recipe = load_recipe(DEFAULT_RECIPE)
    engine = live.load(ROOT / "checkpoints" / recipe.sweep.name, recipe.model, backend=backend)
    move = engine.activate if backend == "llamacpp" else (lambda mix: activate(engine.base.model, mix))
    rng, times = random.Random(0), []
    for _ in range(100):
        w = [rng.random() for _ in INTERP_MIX]
        mix = {c: x / sum(w) for c, x in zip(INTERP_MIX, w)}
        t = time.perf_counter()
        move(mix)
        times.append(time.perf_counter() - t)
    from explorer.generate import MODEL_LOCK

    lock = engine.lock if backend == "llamacpp" else MODEL_LOCK
    builds = []
    for k in range(3):  # a new point's merged blend: built once, when the first answer there is asked for
        with lock:
            t = time.perf_counter()
            engine.blends.resolve({c: (k + 1 + i) / 10 for i, c in enumerate(INTERP_MIX)})
            builds.append(time.perf_counter() - t)
    single, _ = _stream_timing(engine, LIVE_CHECKPOINT, LIVE_TOKENS)
    mixed, _ = _stream_timing(engine, INTERP_MIX, LIVE_TOKENS)  # best of two: the blend is built by the first
    settled = engine.blends.resolve
    engine.blends.resolve = lambda checkpoint: checkpoint  # the corners active at their scales, as before
    scaled, _ = _stream_timing(engine, INTERP_MIX, LIVE_TOKENS)
    engine.blends.resolve = settled
    return {f"interp_switch_ms_{backend}": 1000 * statistics.median(times),
            f"interp_blend_build_ms_{backend}": 1000 * statistics.median(builds),
            f"interp_tok_s_{backend}": LIVE_TOKENS / mixed, f"single_tok_s_{backend}": LIVE_TOKENS / single,
            f"interp_scaled_tok_s_{backend}": LIVE_TOKENS / scaled}


def bench_interp(res: dict) -> None:
    """Continuous sliders on the live view (issue: interpolation): switch cost on each engine, and the
    live engine's tokens/s at an interpolated point relative to a trained one, measured side by side."""
    from explorer import llamacpp

    res.update(_child("import json; from bench.run import interp_child; "
                      "print('RESULT ' + json.dumps(interp_child('torch')))"))
    live_name = "torch"
    if llamacpp.available():
        res.update(_child("import json; from bench.run import interp_child; "
                          "print('RESULT ' + json.dumps(interp_child('llamacpp')))"))
        live_name = "llamacpp"
    res["interp_backend"] = live_name
    res["interp_switch_ms"] = res[f"interp_switch_ms_{live_name}"]
    res["interp_live_vs_single"] = res[f"interp_tok_s_{live_name}"] / res[f"single_tok_s_{live_name}"]
    res["interp_scaled_vs_single"] = res[f"interp_scaled_tok_s_{live_name}"] / res[f"single_tok_s_{live_name}"]


def bench_eval(res: dict) -> None:
    """Evaluation throughput: the batched engine vs a one-prompt-at-a-time generate loop."""
    from explorer.generate import generate_batch, generate_many
    from explorer.suites import load_prompts

    recipe, engine, _ = _engine()
    prompts = load_prompts()
    prompts = prompts[prompts["split"] == "test"]["text"].head(32).tolist()
    n = recipe.eval.max_new_tokens
    t_seq = _timed(lambda: [generate_batch(engine, [p], n) for p in prompts])
    out = []
    t_batch = _timed(lambda: out.append(generate_many(engine, prompts, n, batch_size=recipe.eval.batch_size)))
    toks = sum(g.n_tokens for g in out[-1])
    res.update(eval_sequential_s=t_seq, eval_batched_s=t_batch, eval_batched_tok_s=toks / t_batch,
               eval_speedup=t_seq / t_batch)


def bench_sampled(res: dict) -> None:
    """Sampled answers (eval --sampled): batch_size // k prompts × k answers in one batch, each prompt
    shared by its k rows, vs the greedy batched engine on batch_size prompts; same run, checkpoint and
    length cap."""
    from explorer.generate import activate, generate_many, sample_answers
    from explorer.suites import load_prompts

    recipe, engine, infos = _engine()
    activate(engine.model, infos[-1].id)
    k, n = recipe.eval.samples, recipe.eval.max_new_tokens
    prompts = load_prompts()
    prompts = prompts[prompts["split"] == "test"]["text"].head(recipe.eval.batch_size).tolist()
    sampled, greedy = [], []
    t_sampled = _timed(lambda: sampled.extend(
        g for outs in sample_answers(engine, prompts[:recipe.eval.batch_size // k], k, n, recipe.eval.temperature, 0)
        for g in outs))
    t_greedy = _timed(lambda: greedy.extend(generate_many(engine, prompts, n, batch_size=recipe.eval.batch_size)))
    res.update(sampled_eval_tok_s=sum(g.n_tokens for g in sampled) / t_sampled,
               greedy_eval_tok_s=sum(g.n_tokens for g in greedy) / t_greedy,
               sampled_vs_greedy=(sum(g.n_tokens for g in sampled) / t_sampled)
               / (sum(g.n_tokens for g in greedy) / t_greedy))


UI_CHECKPOINTS, UI_PROMPTS = 25, 40_000  # 1,000,000 judged generations


def bench_ui(res: dict) -> None:
    """Dashboard at scale: a synthetic store (1M generations, 25 checkpoints); see the three parts."""
    from bench.synthetic_store import build

    with tempfile.TemporaryDirectory() as d:
        db, reviews, judge = build(Path(d), n_checkpoints=UI_CHECKPOINTS, n_prompts=UI_PROMPTS)
        res["ui_rows"] = UI_CHECKPOINTS * UI_PROMPTS
        _ui_cold_queries(res, db, reviews, judge)
        _ui_slider_queries(res, db, reviews, judge)
        reruns = sorted(_ui_reruns(db, reviews))
    res["ui_rerun_ms_median"] = statistics.median(reruns)
    res["ui_rerun_ms_p95"] = reruns[int(0.95 * (len(reruns) - 1))]


UI_PAIR = ("s0-h0", "s4-h4")  # the checkpoint pair of the flips query


def _ui_cold_queries(res: dict, db: Path, reviews: Path, judge: str) -> None:
    """Each query the pages run, the first time after a commit (direct calls of explorer.queries)."""
    from explorer import queries, ui

    a, b = UI_PAIR
    cold = {
        "checkpoint_table": lambda: queries.checkpoint_table(judge, db, reviews=reviews),
        "outcomes": lambda: queries.outcomes(judge, db, reviews=reviews),
        # the examples page: every change without texts, then the texts of the rows it shows
        "flips": lambda: queries.responses(a, b, judge, db, reviews=reviews, prompt_ids=queries.flips(
            a, b, judge, db, reviews=reviews, with_text=False)["prompt_id"].head(ui.SHOWN_FLIPS).tolist()),
        "judge_metrics": lambda: queries.judge_metrics(db, reviews),
    }
    res["ui_cold_query_ms"] = {name: statistics.median([_timed(fn) for _ in range(5)]) * 1000
                               for name, fn in cold.items()}
    res["ui_cold_query_ms_max"] = max(res["ui_cold_query_ms"].values())


def _ui_slider_queries(res: dict, db: Path, reviews: Path, judge: str) -> None:
    """What a slider change costs in data access: the store stamp plus the cached query (the dashboard
    keys its cache on the stamp, so an unchanged store reruns no SQL)."""
    from explorer import queries, store, ui

    a, b = UI_PAIR
    sel = ui.Selection(judge, False, queries.DEFAULT_SPLIT)
    slider = {
        "checkpoint_table": lambda: ui._checkpoint_table(store.stamp(db, reviews), sel, db, reviews),
        "outcomes": lambda: ui._outcomes(store.stamp(db, reviews), sel, db, reviews),
        "flips": lambda: ui._texts(stamp := store.stamp(db, reviews), a, b, sel, tuple(
            ui._flips(stamp, a, b, sel, db, reviews, False)["prompt_id"].head(ui.SHOWN_FLIPS)), db, reviews),
        "judge_metrics": lambda: ui._judge_metrics(store.stamp(db, reviews), db, reviews),
    }
    for fn in slider.values():
        fn()  # fill the cache: the first call after a commit is the cold one above
    res["ui_query_ms"] = {name: statistics.median([_timed(fn) for _ in range(20)]) * 1000
                          for name, fn in slider.items()}
    res["ui_query_ms_max"] = max(res["ui_query_ms"].values())


def _ui_reruns(db: Path, reviews: Path) -> list[float]:
    """Whole AppTest reruns (ms) of the trade-off map and the operating-point page after moving a slider
    (script, queries, charts; AppTest adds its own overhead on top of a real server's)."""
    from streamlit.testing.v1 import AppTest

    env = {"EXPLORER_DB": str(db), "EXPLORER_REVIEWS_DB": str(reviews)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reruns = []
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        for k in range(20):  # ε 0.10 … 0.48
            t = time.perf_counter()
            at.slider[0].set_value(0.10 + 0.02 * k).run()
            reruns.append((time.perf_counter() - t) * 1000)
        at.switch_page("explorer/pages/operating_point.py").run()
        safe = at.slider(key="op_lambda_safe")
        positions = np.linspace(safe.min, safe.max, 9)  # trained values and the midpoints between them
        for k in range(20):  # λ_safe back and forth over its range
            t = time.perf_counter()
            safe.set_value(float(positions[k % len(positions)])).run()
            reruns.append((time.perf_counter() - t) * 1000)
        assert not at.exception, at.exception
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return reruns


def bench_refcache(res: dict) -> None:
    """Reference log-probs from the cache vs recomputing them per sweep point; training step speed."""
    from explorer.config import load_recipe
    from explorer.model import load_base
    from explorer.pairs import cached_pairs
    from explorer.suites import load_prompts
    from explorer.train import encode_pairs, reference_logps, train_step_losses

    recipe = load_recipe(DEFAULT_RECIPE)
    base = load_base(recipe.model, training=True, progress=False)
    ps = cached_pairs(base, load_prompts(), recipe, progress=False)
    enc = encode_pairs(base.tokenizer, ps, recipe)
    t_cached = _timed(lambda: reference_logps(base, enc, ps.fingerprint, dtype_setting=recipe.model.dtype), 3)
    t_recompute = _timed(lambda: reference_logps(base, enc, ps.fingerprint, use_cache=False,
                                                 dtype_setting=recipe.model.dtype))
    ref = reference_logps(base, enc, ps.fingerprint, dtype_setting=recipe.model.dtype)
    steps = recipe.train.steps
    # per run: `steps` training steps plus either a cache read or a full recomputation
    from peft import LoraConfig, get_peft_model

    lc = recipe.lora
    model = get_peft_model(base.model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, target_modules=list(lc.target_modules)))
    step_times, toks = [], 0
    for s in range(3):
        t = time.perf_counter()
        terms, n = train_step_losses(model, enc, ref, [0, 1, 2, 3], [0, 1, 2, 3], [0, 1], recipe, 1.0, 1.0,
                                     base.tokenizer.pad_token_id, base.device)
        terms.total.backward()
        step_times.append(time.perf_counter() - t)
        toks += n
    step = statistics.median(step_times)
    res.update(refcache_cached_s=t_cached, refcache_recompute_s=t_recompute, train_step_s=step,
               train_tokens_per_s=toks / sum(step_times),
               refcache_speedup=(steps * step + t_recompute) / (steps * step + t_cached))


def memory_child() -> dict:
    """Resident memory of a fresh process holding the live engine as the dashboard loads it (base model and
    every shipped adapter), across 50 live generations cycling through every checkpoint (must not grow).
    Warm-up: every checkpoint once, so first-use buffers are in the baseline."""
    import gc
    import resource

    from explorer import live
    from explorer.config import load_recipe

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    recipe = load_recipe(DEFAULT_RECIPE)
    engine = live.load(ROOT / "checkpoints" / recipe.sweep.name, recipe.model)
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


def bench_memory(res: dict) -> None:
    res.update(memory_child())


BENCHES = {"live": bench_live, "switch": bench_switch, "eval": bench_eval, "sampled": bench_sampled, "ui": bench_ui,
           "refcache": bench_refcache, "memory": bench_memory, "interp": bench_interp}
TARGETS = {"live_speedup": ">= 2.7", "live_vs_llamacpp": ">= 0.5", "first_token_s": "< 0.3",
           "switch_speedup_vs_gguf": ">= 100", "switch_speedup_vs_cache": ">= 3", "eval_speedup": ">= 5",
           "ui_query_ms_max": "< 50", "ui_rerun_ms_p95": "< 150", "ui_cold_query_ms_max": "< 100",
           "refcache_speedup": ">= 1.3", "interp_switch_ms": "<= 10 (llama.cpp)", "interp_live_vs_single": ">= 0.8",
           "rss_growth_mb": "~ 0"}


def main(only: list[str] | None = None) -> int:
    res = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in only or list(BENCHES):
        print(f"running {name} (in a fresh process) ...", flush=True)
        res.update(_bench(name))
    res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res["machine"] = _machine()
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, default=float))
    tmp.replace(RESULTS)
    print(f"\n{'figure':28s} {'value':>12s}  target")
    for k, target in TARGETS.items():
        v = res.get(k)
        shown = "n/a" if v is None else format(v, "12.3f")
        print(f"{k:28s} {shown:>12}  {target}")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0
