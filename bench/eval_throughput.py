"""Evaluation throughput (`--only eval`): the batched, bucketed engine against a one-prompt-at-a-time
generate loop, on 32 test prompts at the recipe's length cap."""
from __future__ import annotations

from bench.common import eval_engine, timed

TARGETS = {"eval_speedup": ">= 5"}


def first_test_prompts(n: int) -> list[str]:
    """The first n test-split prompt texts (shared with the sampled bench)."""
    from explorer.suites import load_prompts

    prompts = load_prompts()
    return prompts[prompts["split"] == "test"]["text"].head(n).tolist()


def measure() -> dict:
    from explorer.generate import generate_batch, generate_many

    recipe, engine, _ = eval_engine()
    prompts = first_test_prompts(32)
    n = recipe.eval.max_new_tokens
    t_seq = timed(lambda: [generate_batch(engine, [p], n) for p in prompts])
    out = []
    t_batch = timed(lambda: out.append(generate_many(engine, prompts, n, batch_size=recipe.eval.batch_size)))
    toks = sum(g.n_tokens for g in out[-1])
    return {"eval_sequential_s": t_seq, "eval_batched_s": t_batch, "eval_batched_tok_s": toks / t_batch,
            "eval_speedup": t_seq / t_batch}
