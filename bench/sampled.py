"""Sampled answers (`--only sampled`, eval --sampled): batch_size // k prompts × k answers in one batch,
each prompt shared by its k rows, against the greedy batched engine on batch_size prompts; same run,
checkpoint and length cap."""
from __future__ import annotations

from bench.common import eval_engine, timed
from bench.eval_throughput import first_test_prompts

TARGETS: dict = {}  # a ratio reported beside the greedy path, no target


def measure() -> dict:
    from explorer.generate import activate, generate_many, sample_answers

    recipe, engine, infos = eval_engine()
    activate(engine.model, infos[-1].id)
    k, n, batch = recipe.eval.samples, recipe.eval.max_new_tokens, recipe.eval.batch_size
    prompts = first_test_prompts(batch)
    sampled, greedy = [], []
    t_sampled = timed(lambda: sampled.extend(
        g for outs in sample_answers(engine, prompts[:batch // k], k, n, recipe.eval.temperature, 0) for g in outs))
    t_greedy = timed(lambda: greedy.extend(generate_many(engine, prompts, n, batch_size=batch)))
    sampled_tok_s = sum(g.n_tokens for g in sampled) / t_sampled
    greedy_tok_s = sum(g.n_tokens for g in greedy) / t_greedy
    return {"sampled_eval_tok_s": sampled_tok_s, "greedy_eval_tok_s": greedy_tok_s,
            "sampled_vs_greedy": sampled_tok_s / greedy_tok_s}
