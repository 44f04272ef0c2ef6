"""A tiny randomly initialised Llama with SmolLM2's tokenizer, saved to a directory: the stand-in for
'any Hugging Face causal LM by path' and the model of the pipeline tests (fast on CPU)."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from explorer.config import Recipe, load_recipe
from explorer.model import ModelConfig, provision

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def make_tiny_model(directory: Path, seed: int = 0, head_dim: int = 16) -> Path:
    """head_dim 16 keeps it smallest; vLLM's CPU attention kernels take head dimensions from 32 up."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=2 * head_dim, intermediate_size=4 * head_dim, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # special tokens (ids 0-16) get zero logits, so greedy text is never empty
        model.get_output_embeddings().weight[:17] = 0
    model.save_pretrained(directory, safe_serialization=True)
    src = provision(ModelConfig(), progress=False)  # borrow the real tokenizer + chat template
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, directory / name)
    return directory


def tiny_recipe(model_dir: Path, name: str = "tiny", **sections) -> Recipe:
    over = {"model": {"base_model": str(model_dir), "dtype": "float32"},
            "train": {"steps": 4, "batch_pairs": 2, "batch_lm": 1, "n_safe_pairs": 8, "n_helpful_pairs": 8,
                      "n_lm": 4, "max_response_tokens": 8, "max_prompt_tokens": 48, "warmup_steps": 1},
            "sweep": {"name": name, "lambda_safe": [0.0, 1.0], "lambda_helpful": [0.0, 1.0], "variants": []},
            "eval": {"max_new_tokens": 8, "batch_size": 8, "judges": ["keyword"], "primary_judge": "keyword",
                     "splits": ["test"]}}  # attack prompts are longer than the tiny model's 256-token context
    for k, v in sections.items():
        over.setdefault(k, {}).update(v)
    return load_recipe(None, over)


def tiny_sweep_store(recipe: Recipe, work: Path, limit: int = 2) -> tuple[Path, Path]:
    """Train `recipe`'s sweep under work/checkpoints and evaluate it into work/eval.duckdb through the CLI
    (at most `limit` prompts per suite), as a user would. Returns (store, sweep directory). Callers point
    explorer.pairs.PAIRS_DIR somewhere temporary first."""
    import json

    import yaml

    from explorer.__main__ import main
    from explorer.sweep import run_sweep

    path = Path(work) / f"{recipe.sweep.name}.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(recipe.to_dict()))))  # tuples → lists
    run_sweep(recipe, root=Path(work) / "checkpoints", progress=False)
    db, sweep = Path(work) / "eval.duckdb", Path(work) / "checkpoints" / recipe.sweep.name
    assert main(["eval", "--recipe", str(path), "--checkpoints", str(sweep), "--db", str(db), "--limit", str(limit)]) == 0
    return db, sweep
