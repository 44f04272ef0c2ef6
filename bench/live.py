"""Live generation (`--only live`): batch 1, 128 new tokens, a LoRA checkpoint active. The live path
(llama.cpp when installed) against naive fp32 `generate` and against llama.cpp on the bare base GGUF,
each side in its own process (bench/NOTES.md, "torch and llama.cpp in one process")."""
from __future__ import annotations

import os

from bench.common import DEFAULT_RECIPE, LIVE_CHECKPOINT, LIVE_TOKENS, PROMPT, in_child, live_engine, stream_timing, timed

TARGETS = {"live_speedup": ">= 2.7", "live_vs_llamacpp": ">= 0.5", "first_token_s": "< 0.3"}
OPTIONAL_KEYS = ("llamacpp_note",)  # written only without llama.cpp: dropped from the file when a run leaves it out


def torch_child() -> dict:
    """Naive fp32 `generate` (no adapters) and the PyTorch live path, torch at its default threads."""
    import torch
    from transformers import AutoModelForCausalLM

    from explorer.config import load_recipe
    from explorer.generate import encode_chat
    from explorer.model import provision

    engine = live_engine("torch")
    fp32 = AutoModelForCausalLM.from_pretrained(provision(load_recipe(DEFAULT_RECIPE).model, progress=False),
                                                dtype=torch.float32).eval()
    enc = encode_chat(engine.base, [PROMPT], None, LIVE_TOKENS)

    def naive():
        with torch.inference_mode():
            return fp32.generate(**enc, max_new_tokens=LIVE_TOKENS, min_new_tokens=LIVE_TOKENS, do_sample=False,
                                 pad_token_id=engine.base.tokenizer.pad_token_id)

    t_naive = timed(naive, 2)
    t, first = stream_timing(engine, LIVE_CHECKPOINT, LIVE_TOKENS)
    return {"live_naive_tok_s": LIVE_TOKENS / t_naive, "live_torch_tok_s": LIVE_TOKENS / t,
            "live_torch_first_token_s": first}


def llamacpp_child() -> dict:
    """The llama.cpp live path as the dashboard loads it."""
    t, first = stream_timing(live_engine("llamacpp"), LIVE_CHECKPOINT, LIVE_TOKENS)
    return {"live_llamacpp_tok_s": LIVE_TOKENS / t, "live_llamacpp_first_token_s": first}


def llamacpp_bare_child() -> dict:
    """llama.cpp on the same base GGUF and prompt tokens with no adapter, straight through llama-cpp-python
    (own process: a second llama.cpp context in the engine's process would share its OpenMP threads)."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from explorer.config import load_recipe
    from explorer.model import chat_prompt, find_gguf, provision

    tok = AutoTokenizer.from_pretrained(provision(load_recipe(DEFAULT_RECIPE).model, progress=False))
    ids = tok(chat_prompt(tok, PROMPT), add_special_tokens=False)["input_ids"]
    llm = Llama(model_path=str(find_gguf()), n_ctx=8192, n_batch=512, n_threads=os.cpu_count(), verbose=False)

    def bare():
        llm.reset()
        for k, _ in enumerate(llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)):
            if k + 1 >= LIVE_TOKENS:
                break

    return {"llamacpp_base_tok_s": LIVE_TOKENS / timed(bare, 2)}


def measure() -> dict:
    from explorer import llamacpp

    res = in_child("live", "torch_child")
    backend = "llamacpp" if llamacpp.available() else "torch"
    if backend == "llamacpp":
        res.update(in_child("live", "llamacpp_child"))
        res.update(in_child("live", "llamacpp_bare_child"))
        res["live_vs_llamacpp"] = res["live_llamacpp_tok_s"] / res["llamacpp_base_tok_s"]
    else:
        res["live_vs_llamacpp"] = None
        res["llamacpp_note"] = "llama-cpp-python not installed (make fast-live)"
    res["live_backend"] = backend
    res["live_tok_s"] = res[f"live_{backend}_tok_s"]
    res["live_speedup"] = res["live_tok_s"] / res["live_naive_tok_s"]
    res["first_token_s"] = res[f"live_{backend}_first_token_s"]
    return res
