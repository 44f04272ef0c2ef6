"""The vLLM engine's worker: runs in vLLM's own environment (`make vllm`: .venv-vllm), never imports explorer.

vLLM pins a transformers older than ours, so it lives in a virtual environment of its own and this script
is its whole interface (explorer/vllm_engine.py starts it and talks to it). One JSON object per line on
stdin, one per line on stdout:

    {"model": DIR, "adapters": {name: DIR}, "max_lora_rank": 8, "dtype": "float32", "max_model_len": 2048}
        → {"ready": true, "vllm": VERSION}
    {"prompts": [[token ids], ...], "adapters": [name | null, ...], "max_tokens": 48, "temperature": 0,
     "n": 1, "seed": 0}
        → {"outputs": [[[token ids of answer 1], ...], ...]}   (n answers per prompt)

Every request of a call is one vLLM batch, whichever adapter it asks for (multi-LoRA batching); null: the
model as loaded (the base, or a full checkpoint served on its own). Prompts arrive as token ids (our
tokenizer and chat template made them) and answers leave as token ids (ours decodes them).
"""
import json
import os
import sys

# vLLM logs to stdout: the answers get a descriptor of their own, and everything else goes to stderr
ANSWERS = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)


def main() -> int:
    import torch
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    config = json.loads(sys.stdin.readline())
    adapters = config.get("adapters") or {}
    # on a CPU the "GPU" memory share is the share of RAM vLLM reserves for its KV cache: a small model's
    # evaluation needs a few GiB, and the rest of the machine (the judges, the dashboard) keeps its memory
    memory = config.get("memory_share") or (0.9 if torch.cuda.is_available() else 0.15)
    llm = LLM(model=config["model"], dtype=config.get("dtype", "auto"), seed=0, gpu_memory_utilization=memory,
              max_model_len=config.get("max_model_len"), enable_lora=bool(adapters), enforce_eager=True,
              max_loras=max(1, min(len(adapters), 8)), max_lora_rank=config.get("max_lora_rank", 16))
    requests = {name: LoRARequest(name, i + 1, path) for i, (name, path) in enumerate(adapters.items())}
    _say({"ready": True, "vllm": __import__("vllm").__version__})
    for line in sys.stdin:
        job = json.loads(line)
        outs = llm.generate([{"prompt_token_ids": ids} for ids in job["prompts"]], _params(job), use_tqdm=False,
                            lora_request=[requests.get(a) if a else None for a in job["adapters"]])
        _say({"outputs": [[list(c.token_ids) for c in o.outputs] for o in outs]})
    return 0


def _params(job: dict):
    from vllm import SamplingParams

    sampled = bool(job.get("temperature"))
    return SamplingParams(max_tokens=job["max_tokens"], temperature=job.get("temperature", 0.0), n=job.get("n", 1),
                          seed=job.get("seed"), top_k=-1 if sampled else 1, detokenize=False)


def _say(obj: dict) -> None:
    ANSWERS.write(json.dumps(obj) + "\n")
    ANSWERS.flush()


if __name__ == "__main__":
    sys.exit(main())
