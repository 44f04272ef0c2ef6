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
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
PROMPT = "Explain how a refrigerator keeps food cold, step by step."


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
    from explorer.config import load_recipe
    from explorer.evaluate import attach_adapters, discover
    from explorer.model import load_base

    recipe = load_recipe(ROOT / "configs" / "default.yaml")
    base = load_base(recipe.model, progress=False)
    infos = discover(ROOT / "checkpoints" / recipe.sweep.name, base)
    return recipe, attach_adapters(base, infos), infos


def bench_live(res: dict) -> None:
    """Batch 1, 128 new tokens: the live path (bf16, LoRA checkpoint active) vs naive fp32 generate."""
    from transformers import AutoModelForCausalLM

    from explorer.generate import encode_chat, stream
    from explorer.model import provision

    recipe, engine, infos = _engine()
    ck = next((i.id for i in infos if not i.is_base), "base")
    n_new = 128
    # naive: fp32 model, plain generate, no adapters
    fp32 = AutoModelForCausalLM.from_pretrained(provision(recipe.model, progress=False), dtype=torch.float32).eval()
    enc = encode_chat(engine, [PROMPT], None, n_new)

    def naive():
        with torch.inference_mode():
            return fp32.generate(**enc, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                 pad_token_id=engine.tokenizer.pad_token_id)

    t_naive = _timed(naive, 2)

    first = []

    def live():
        t = time.perf_counter()
        got_first = False
        for piece in stream(engine, ck, PROMPT, n_new, min_new_tokens=n_new):
            if not got_first and piece:
                first.append(time.perf_counter() - t)
                got_first = True

    t_live = _timed(live, 2)
    res["live_naive_tok_s"] = n_new / t_naive
    res["live_tok_s"] = n_new / t_live
    res["live_speedup"] = t_naive / t_live
    res["first_token_s"] = min(first)
    try:
        res.update(_llamacpp(n_new, t_live))
    except ImportError:
        res["live_vs_llamacpp"] = None
        res["llamacpp_note"] = "llama-cpp-python not installed (pip install llama-cpp-python; bench-only)"


def _llamacpp(n_new: int, t_live: float) -> dict:
    from llama_cpp import Llama

    from explorer.model import find_gguf

    llm = Llama(model_path=str(find_gguf()), n_ctx=512, n_threads=os.cpu_count(), verbose=False)
    msgs = [{"role": "user", "content": PROMPT}]
    t = _timed(lambda: llm.create_chat_completion(msgs, max_tokens=n_new, temperature=0.0), 2)
    return {"llamacpp_tok_s": n_new / t, "live_vs_llamacpp": t / t_live}


def bench_switch(res: dict) -> None:
    """Checkpoint switch: adapter swap vs reloading the model from the GGUF file / safetensors cache."""
    from explorer.generate import activate
    from explorer.model import ModelConfig, timed_load

    _, engine, infos = _engine()
    ids = [i.id for i in infos]
    swaps = []
    for k in range(50):
        t = time.perf_counter()
        activate(engine.model, ids[k % len(ids)])
        swaps.append(time.perf_counter() - t)
    t_swap = statistics.median(swaps)
    t_cache = min(timed_load(ModelConfig()) for _ in range(2))
    t_gguf = timed_load(ModelConfig(), from_gguf=True)
    res.update(switch_swap_s=t_swap, switch_cache_reload_s=t_cache, switch_gguf_reload_s=t_gguf,
               switch_speedup_vs_cache=t_cache / t_swap, switch_speedup_vs_gguf=t_gguf / t_swap)


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


def bench_ui(res: dict) -> None:
    """Dashboard at scale: a synthetic store (100k generations, 25 checkpoints); time each query a
    slider change triggers, and a whole page's data functions (the rerun's cost outside rendering)."""
    from bench.synthetic_store import build
    from explorer import metrics, queries

    with tempfile.TemporaryDirectory() as d:
        db, reviews, judge = build(Path(d), n_checkpoints=25, n_prompts=4000)
        calls = {
            "checkpoint_table": lambda: queries.checkpoint_table(judge, db),
            "outcomes": lambda: queries.outcomes(judge, db),
            "responses(flips)": lambda: metrics.flips(queries.responses("s0-h0", "s4-h4", judge, db)),
            "judge_metrics": lambda: queries.judge_metrics(db),
        }
        os.environ["EXPLORER_REVIEWS_DB"] = str(reviews)
        from explorer import store

        store.REVIEWS_DB = reviews
        times = {name: statistics.median([_timed(fn) for _ in range(5)]) * 1000 for name, fn in calls.items()}
        page = []
        for _ in range(20):
            t = time.perf_counter()
            table = queries.checkpoint_table(judge, db)
            metrics.best_under_ceiling(table, 0.3)
            metrics.category_rates(queries.outcomes(judge, db), "s2-h2")
            page.append((time.perf_counter() - t) * 1000)
    res["ui_query_ms"] = times
    res["ui_query_ms_max"] = max(times.values())
    res["ui_rerun_ms_p95"] = sorted(page)[int(0.95 * (len(page) - 1))]


def bench_refcache(res: dict) -> None:
    """Reference log-probs from the cache vs recomputing them per sweep point; training step speed."""
    from explorer.config import load_recipe
    from explorer.model import load_base
    from explorer.pairs import cached_pairs
    from explorer.suites import load_prompts
    from explorer.train import encode_pairs, reference_logps, train_step_losses

    recipe = load_recipe(ROOT / "configs" / "default.yaml")
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


def bench_memory(res: dict) -> None:
    """Resident memory with the base model and every shipped adapter loaded, across 50 live
    generations and checkpoint switches (must not grow)."""
    import gc
    import resource

    from explorer.generate import generate_one

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    _, engine, infos = _engine()
    ids = [i.id for i in infos]
    for k in range(5):  # warm-up: allocator pools, first-call caches
        generate_one(engine, ids[k % len(ids)], PROMPT, 16)
    gc.collect()
    start = rss_mb()
    for k in range(50):
        generate_one(engine, ids[k % len(ids)], PROMPT, 16)
    gc.collect()
    end = rss_mb()
    res.update(rss_loaded_mb=start, rss_after_50_mb=end, rss_growth_mb=end - start,
               rss_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


BENCHES = {"live": bench_live, "switch": bench_switch, "eval": bench_eval, "ui": bench_ui,
           "refcache": bench_refcache, "memory": bench_memory}
TARGETS = {"live_speedup": ">= 2.7", "live_vs_llamacpp": ">= 0.5", "first_token_s": "< 0.3",
           "switch_speedup_vs_gguf": ">= 100", "switch_speedup_vs_cache": ">= 3", "eval_speedup": ">= 5",
           "ui_query_ms_max": "< 50", "ui_rerun_ms_p95": "< 150", "refcache_speedup": ">= 1.3",
           "rss_growth_mb": "~ 0"}


def main(only: list[str] | None = None) -> int:
    res = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in only or list(BENCHES):
        print(f"running {name} ...", flush=True)
        BENCHES[name](res)
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
