"""Evaluation engines side by side (`--only engines`): the HF engine (one adapter at a time, batched and
bucketed, as `eval` runs it) against vLLM (every adapter in one engine, their prompts in shared batches), on
the same shipped checkpoints, prompts and length cap, in the recipe's dtype; and how often the two give the
same greedy answer. Needs vLLM's environment (`make vllm`)."""
from __future__ import annotations

import time

from bench.common import eval_engine
from bench.eval_throughput import first_test_prompts

TARGETS = {"eval_engine_ratio": ">= 3", "eval_engine_same_answers": ">= 0.95"}
ENGINE_CHECKPOINTS, ENGINE_PROMPTS = 8, 64  # ≥ 8 adapters: the family size the target is stated for


def measure() -> dict:
    from explorer.generate import activate, generate_many
    from explorer.model import pick_dtype, provision
    from explorer.vllm_engine import served_as, start

    recipe, engine, infos = eval_engine()
    chosen = [i for i in infos if not i.is_base][:ENGINE_CHECKPOINTS]
    prompts, n = first_test_prompts(ENGINE_PROMPTS), recipe.eval.max_new_tokens
    t = time.perf_counter()
    hf = {}
    for info in chosen:
        activate(engine.model, info.id)
        hf[info.id] = generate_many(engine, prompts, n, batch_size=recipe.eval.batch_size)
    hf_s = time.perf_counter() - t
    dtype = str(pick_dtype(recipe.model, engine.device, False)).removeprefix("torch.")
    with start(engine, provision(recipe.model, progress=False), chosen, dtype) as vllm:
        vllm.answers([served_as(vllm, chosen[0])], prompts[:1], 4)  # warm-up: the first call compiles
        t = time.perf_counter()
        outs = vllm.answers([served_as(vllm, i) for i in chosen for _ in prompts], prompts * len(chosen), n)
        vllm_s = time.perf_counter() - t
    hf_answers = [g for i in chosen for g in hf[i.id]]
    same = sum(a.response == o[0].response for a, o in zip(hf_answers, outs)) / len(outs)
    tok = {"hf": sum(g.n_tokens for g in hf_answers) / hf_s, "vllm": sum(o[0].n_tokens for o in outs) / vllm_s}
    return {"eval_engine_tok_s": tok, "eval_engine_ratio": tok["vllm"] / tok["hf"], "eval_engine_same_answers": same,
            "eval_engine_setup": {"checkpoints": len(chosen), "prompts": len(prompts), "max_new_tokens": n,
                                  "dtype": dtype, "hf_s": hf_s, "vllm_s": vllm_s}}
