"""Evaluation: every checkpoint (base included) × every prompt of the evaluated splits, generated,
judged by every registered judge, written to the store.

Incremental and resumable: generations are keyed by (checkpoint fingerprint, prompt id,
generation settings) and judgments additionally by (judge, judge version); a rerun does only what
is missing. Each batch commits in one transaction, and the metrics count a checkpoint only once
all its prompts are in (sql/outcomes.sql), so a kill never leaves a checkpoint half-counted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import pandas as pd

from . import store
from .checkpoints import CheckpointInfo
from .config import ConfigError, ModelConfig, Recipe
from .generate import activate, adapter_name, generate_many
from .model import Base


def generation_settings(recipe: Recipe) -> dict:
    """What decides a response besides the checkpoint and the prompt: greedy decoding, the length cap,
    no system prompt beyond the chat template's, and the engine where it is not the HF one (other kernels
    can break a near-tie otherwise: bench/NOTES.md gives how often the two engines' answers agree)."""
    settings = {"greedy": True, "max_new_tokens": recipe.eval.max_new_tokens, "system": None}
    return settings if recipe.eval.engine == "hf" else {**settings, "engine": recipe.eval.engine}


def gen_key(recipe: Recipe) -> str:
    """Identifies generation settings; stored with every generation and judgment."""
    return settings_key(generation_settings(recipe))


def settings_key(settings: dict) -> str:
    return "g-" + hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:10]


def evaluation_row(recipe: Recipe, settings: dict, replace: bool) -> dict:
    """The parameters of sql/upsert_evaluation.sql for one set of generation settings."""
    return {"gen_key": settings_key(settings), "settings": json.dumps(settings), "sweep": recipe.sweep.name,
            "judges": json.dumps(list(recipe.eval.judges)), "primary_judge": recipe.eval.primary_judge,
            "recipe": json.dumps(recipe.to_dict()), "replace": replace}


def sample_settings(recipe: Recipe, index: int) -> dict:
    """The settings of the index-th sampled answer to each prompt (eval --sampled): each of the k samples
    is its own generation key, so the stored tables need no sample column."""
    return {"greedy": False, "temperature": recipe.eval.temperature, "top_k": 0, "top_p": 1.0,
            "max_new_tokens": recipe.eval.max_new_tokens, "system": None, "sample": index}


def attach_adapters(base: Base, infos: list[CheckpointInfo]):
    """Wrap the base model once and load every adapter under its own name (switched, never reloaded)."""
    from peft import PeftModel

    adapters = [i for i in infos if i.directory is not None and not i.is_full]  # not the base, blends, full models
    if not adapters:
        return base
    model = base.model
    if not isinstance(model, PeftModel):
        first = adapters[0]
        model = PeftModel.from_pretrained(model, str(first.directory), adapter_name=adapter_name(first.id),
                                          is_trainable=False)
    for info in adapters:
        if adapter_name(info.id) not in model.peft_config:
            model.load_adapter(str(info.directory), adapter_name=adapter_name(info.id), is_trainable=False)
    model.eval()
    return dataclasses.replace(base, model=model)


def point_at(engine: Base, info: CheckpointInfo) -> None:
    """Make `engine` answer as `info`: switch to its adapter; a full checkpoint is an engine of its own
    (full_engine), already itself."""
    if not info.is_full:
        activate(engine.model, info.id)


def full_engine(info: CheckpointInfo, cfg: ModelConfig) -> Base:
    """An imported full fine-tune, loaded as a model of its own with the base's settings (dtype, device)."""
    from .model import load_base

    return load_base(dataclasses.replace(cfg, base_model=str(info.directory)), progress=False)


def register(infos: list[CheckpointInfo], prompts: pd.DataFrame, recipe: Recipe, db: Path | None = None,
             imported: bool = False) -> None:
    """Record the evaluation's settings, its checkpoints and its prompts before anything is generated, so
    readers take everything they need from the store (never from a recipe file on disk). An `imported`
    suite's run leaves an existing evaluation's settings as they are."""
    with store.writer("eval", db) as con:
        con.execute(store.sql("upsert_evaluation"), evaluation_row(recipe, generation_settings(recipe),
                                                                   replace=not imported))
        for i in infos:
            con.execute(store.sql("upsert_checkpoint"), {
                "id": i.id, "sweep": recipe.sweep.name, "lambda_safe": i.lambda_safe,
                "lambda_helpful": i.lambda_helpful, "is_base": i.is_base, "fingerprint": i.fingerprint,
                "base_fingerprint": i.manifest["base_fingerprint"], "recipe": json.dumps(i.manifest.get("recipe")),
                "manifest": json.dumps({k: v for k, v in i.manifest.items() if k != "loss_history"})})
        con.register("incoming_prompts", prompts.rename(columns={"group": "grp"}))
        conflicts = con.execute(store.sql("prompt_conflicts")).df()
        if len(conflicts):
            first = conflicts.iloc[0]
            raise ConfigError(f"{len(conflicts)} prompt(s) would replace stored ones with other content, e.g. "
                              f"{first['id']!r} (suite {first['stored_suite']}, split {first['stored_split']}); "
                              "nothing was written. Give an imported file a new name to import it as a new "
                              "suite, or evaluate into a new store with --db")
        con.execute(store.sql("insert_prompts"))
        con.unregister("incoming_prompts")


def commit_size(recipe: Recipe) -> int:
    """Prompts generated and committed together by the local engine: two decoding batches."""
    return recipe.eval.batch_size * 2


def evaluate(engine: Base, infos: list[CheckpointInfo], prompts: pd.DataFrame, recipe: Recipe, judges: list,
             db: Path | None = None, progress: bool = True, batch_commit: int | None = None) -> dict:
    """Generate what is missing, then judge what is unjudged. Returns counts of new rows.
    `engine` is the base model with the checkpoints' adapters attached (attach_adapters)."""
    from tqdm.auto import tqdm

    key = gen_key(recipe)
    ids = prompts["id"].tolist()
    text = dict(zip(prompts["id"], prompts["text"]))
    with store.reader(db) as con:
        todo = {i.id: missing_prompts(con, i.fingerprint, key, ids) for i in infos}
    total = sum(len(v) for v in todo.values())
    bar = tqdm(total=total, desc="eval: generating", disable=not progress)
    new_gen = new_judged = 0
    chunk = batch_commit or commit_size(recipe)
    for info in infos:
        pending = todo[info.id]
        if not pending:
            continue
        bar.set_postfix(checkpoint=info.id)
        point_at(engine, info)
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            t0 = time.perf_counter()
            outs = generate_many(engine, [text[p] for p in part], recipe.eval.max_new_tokens,
                                 batch_size=recipe.eval.batch_size, progress=bar)
            rows = generation_rows([(info, p) for p in part], key, outs)
            new_judged += commit_judged(rows, [text[p] for p in part], judges, db)
            new_gen += len(part)
            bar.set_postfix(checkpoint=info.id, s_per_prompt=f"{(time.perf_counter() - t0) / len(part):.2f}")
    bar.close()
    new_judged += judge_missing(judges, db, progress)
    return {"generated": new_gen, "judged": new_judged}


def evaluate_vllm(engine, infos: list[CheckpointInfo], prompts: pd.DataFrame, recipe: Recipe, judges: list,
                  db: Path | None = None, progress: bool = True) -> dict:
    """`eval.engine: vllm`: what is missing, for every checkpoint at once: each call to the engine mixes the
    prompts of several adapters in one batch; each call's answers are judged and committed together."""
    from tqdm.auto import tqdm

    from .vllm_engine import served_as

    key = gen_key(recipe)
    ids, text = prompts["id"].tolist(), dict(zip(prompts["id"], prompts["text"]))
    with store.reader(db) as con:
        todo = [(i, p) for i in infos for p in missing_prompts(con, i.fingerprint, key, ids)]
    chunk, judged = VLLM_CALL_REQUESTS, 0
    bar = tqdm(total=len(todo), desc="eval (vllm): generating", disable=not progress)
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        outs = engine.answers([served_as(engine, i) for i, _ in part],
                              [text[p] for _, p in part], recipe.eval.max_new_tokens)
        judged += commit_judged(generation_rows(part, key, [o[0] for o in outs]), [text[p] for _, p in part], judges, db)
        bar.update(len(part))
    bar.close()
    return {"generated": len(todo), "judged": judged + judge_missing(judges, db, progress)}


VLLM_CALL_REQUESTS = 256  # requests per engine call: a batch across adapters, and the commit's size


def evaluate_ray(base: Base, infos: list[CheckpointInfo], prompts: pd.DataFrame, recipe: Recipe, judges: list,
                 db: Path | None = None, progress: bool = True) -> dict:
    """`eval --launcher ray`: one Ray task per checkpoint generates its missing answers (one GPU each where
    there are GPUs, else sweep.cpus_per_run CPUs); the driver judges them and is the only writer of the
    store, committing each checkpoint as its task returns. Resumable like evaluate(): a rerun sends only
    the prompts each checkpoint is still missing. Connects to RAY_ADDRESS if set, else starts a local
    cluster."""
    import os

    import torch
    from tqdm.auto import tqdm

    try:
        import ray
    except ImportError:
        raise ConfigError("--launcher ray needs ray: pip install -r requirements-ray.txt (or leave out --launcher)") from None
    key = gen_key(recipe)
    ids = prompts["id"].tolist()
    text = dict(zip(prompts["id"], prompts["text"]))
    with store.reader(db) as con:
        todo = {i.id: missing_prompts(con, i.fingerprint, key, ids) for i in infos}
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    resources = {"num_gpus": 1} if torch.cuda.is_available() else {"num_cpus": recipe.sweep.cpus_per_run}
    task = ray.remote(**resources)(_ray_generate)
    by_info = {i.id: i for i in infos}
    pending = {task.remote(recipe.to_dict(), str(i.directory or ""), i.id, [text[p] for p in todo[i.id]]): i.id
               for i in infos if todo[i.id]}
    bar = tqdm(total=len(pending), desc="eval (ray): checkpoints", disable=not progress)
    new_gen = new_judged = 0
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        info = by_info[pending.pop(done)]
        answers = ray.get(done)
        rows = pd.DataFrame({"checkpoint_fp": info.fingerprint, "checkpoint_id": info.id, "prompt_id": todo[info.id],
                             "gen_key": key, "response": [a["response"] for a in answers],
                             "n_tokens": [a["n_tokens"] for a in answers], "seconds": [a["seconds"] for a in answers]})
        new_judged += commit_judged(rows, [text[p] for p in todo[info.id]], judges, db)
        new_gen += len(rows)
        bar.update(1)
    bar.close()
    new_judged += judge_missing(judges, db, progress)
    return {"generated": new_gen, "judged": new_judged}


def _ray_generate(recipe_dict: dict, adapter_dir: str, checkpoint_id: str, texts: list[str]) -> list[dict]:
    """One checkpoint's greedy answers inside a Ray worker (its own process, its own copy of the model)."""
    from .checkpoints import BASE_ID, base_info, run_info, validate_adapter
    from .config import load_recipe
    from .model import load_base

    recipe = load_recipe(None, overrides=recipe_dict)
    base = load_base(recipe.model, progress=False)
    info = (base_info(base.name, base.fingerprint) if checkpoint_id == BASE_ID
            else run_info(Path(adapter_dir), validate_adapter(Path(adapter_dir), base.fingerprint)))
    engine = attach_adapters(base, [info])
    activate(engine.model, checkpoint_id)
    chunk = commit_size(recipe)  # the local engine's chunks, so both launchers decode the same batches
    outs = [g for s in range(0, len(texts), chunk)
            for g in generate_many(engine, texts[s:s + chunk], recipe.eval.max_new_tokens,
                                   batch_size=recipe.eval.batch_size)]
    return [{"response": g.response, "n_tokens": g.n_tokens, "seconds": g.seconds} for g in outs]


def generation_rows(pairs: list[tuple[CheckpointInfo, str]], key: str, gens: list) -> pd.DataFrame:
    """The generations table's rows of one commit: each (checkpoint, prompt id) pair's answer."""
    return pd.DataFrame({"checkpoint_fp": [i.fingerprint for i, _ in pairs], "checkpoint_id": [i.id for i, _ in pairs],
                         "prompt_id": [p for _, p in pairs], "gen_key": key, "response": [g.response for g in gens],
                         "n_tokens": [g.n_tokens for g in gens], "seconds": [g.seconds for g in gens]})


def commit_judged(rows: pd.DataFrame, prompt_texts: list[str], judges: list, db: Path | None) -> int:
    """Judge new generations and write both in one transaction (a kill never leaves answers unjudged);
    returns the number of judgments written."""
    verdicts = judge_rows(rows, prompt_texts, judges)
    with store.writer("eval", db) as con:
        con.register("new_generations", rows)
        con.execute(store.sql("insert_generations"))
        con.register("new_judgments", verdicts)
        con.execute(store.sql("insert_judgments"))
    return len(verdicts)


def missing_prompts(con, fp: str, key: str, prompt_ids: list[str]) -> list[str]:
    done = {r[0] for r in con.execute(store.sql("done_prompts"), {"fp": fp, "gen_key": key}).fetchall()}
    return [p for p in prompt_ids if p not in done]


def judge_rows(rows: pd.DataFrame, prompt_texts: list[str], judges: list) -> pd.DataFrame:
    out = []
    for j in judges:
        for (_, r), v in zip(rows.iterrows(), j.judge(prompt_texts, rows["response"].tolist())):
            out.append({"checkpoint_fp": r.checkpoint_fp, "prompt_id": r.prompt_id, "gen_key": r.gen_key,
                        "judge": j.name, "judge_version": j.version, "label": v.label, "explanation": v.explanation})
    return pd.DataFrame(out, columns=["checkpoint_fp", "prompt_id", "gen_key", "judge", "judge_version", "label",
                                      "explanation"])


JUDGE_CHUNK = 512  # judgments committed together when judging stored generations


def judge_missing(judges: list, db: Path | None = None, progress: bool = True) -> int:
    """Judge every stored generation that this judge version has not judged yet (e.g. after retraining),
    committing chunk by chunk so a killed run keeps what it judged."""
    from tqdm.auto import tqdm

    n = 0
    for j in judges:
        with store.reader(db) as con:
            rows = con.execute(store.sql("unjudged"), {"judge": j.name, "judge_version": j.version}).df()
        for start in tqdm(range(0, len(rows), JUDGE_CHUNK), desc=f"judging stored answers ({j.name})",
                          disable=not progress or rows.empty):
            part = rows.iloc[start:start + JUDGE_CHUNK]
            verdicts = judge_rows(part, part["text"].tolist(), [j])
            with store.writer("eval", db) as con:
                con.register("new_judgments", verdicts)
                con.execute(store.sql("insert_judgments"))
            n += len(verdicts)
    return n


def capability(engine: Base, infos: list[CheckpointInfo], recipe: Recipe, db: Path | None = None) -> None:
    """Capability proxy without generation: mean NLL (nats/token) of the *base model's* answers to the
    held-out general prompts, under each checkpoint. A checkpoint that drifts from the base's fluent
    answers (or learned to refuse ordinary requests) pays for it here; cheap, deterministic, and
    independent of any judge."""
    import torch

    from .losses import IGNORE_INDEX
    from .train import collate, encode_example

    key = gen_key(recipe)
    with store.reader(db) as con:
        ref = con.execute(store.sql("base_general_answers"), {"gen_key": key, "split": "test"}).df()
        done = set(con.execute(store.sql("capability_done")).df()["checkpoint_fp"])
    if ref.empty:
        return
    examples = [encode_example(engine.tokenizer, p, r, 64, recipe.eval.max_new_tokens) for p, r in
                zip(ref["text"], ref["response"]) if r.strip()]
    for info in infos:
        if info.fingerprint in done:
            continue
        point_at(engine, info)
        nll, ntok = 0.0, 0
        with torch.inference_mode():
            for s in range(0, len(examples), 16):
                b = collate(examples[s:s + 16], engine.tokenizer.pad_token_id, engine.device)
                logits = engine.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                      logits_to_keep=b["keep"]).logits.float()
                tgt = b["labels"][:, 1:]
                lp = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                       ignore_index=IGNORE_INDEX, reduction="sum")
                nll += float(lp)
                ntok += int((tgt != IGNORE_INDEX).sum())
        with store.writer("eval", db) as con:
            con.execute(store.sql("insert_capability"), {"checkpoint_fp": info.fingerprint, "checkpoint_id": info.id,
                                                         "mean_nll": nll / max(1, ntok), "n_tokens": ntok})


# ---------------------------------------------------------------- sampled answers (eval --sampled)

def sampled_prompt_set(prompts: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """n harmful and n benign test prompts in a stable pseudo-random order (hash of seed and id)."""
    test = prompts[prompts["split"] == "test"]
    order = test["id"].map(lambda i: hashlib.sha256(f"sampled:{seed}:{i}".encode()).hexdigest())
    test = test.assign(_order=order).sort_values("_order")
    return pd.concat([test[test["kind"] == kind].head(n) for kind in ("harmful", "benign")]).drop(columns="_order")


def register_sampling(recipe: Recipe, db: Path | None = None) -> list[str]:
    """Record the k sampling settings as evaluations; returns their generation keys."""
    keys = []
    with store.writer("eval", db) as con:
        for i in range(recipe.eval.samples):
            settings = sample_settings(recipe, i)
            keys.append(settings_key(settings))
            con.execute(store.sql("upsert_evaluation"), evaluation_row(recipe, settings, replace=True))
    return keys


def evaluate_sampled(engine: Base, infos: list[CheckpointInfo], prompts: pd.DataFrame, recipe: Recipe,
                     judges: list, db: Path | None = None, progress: bool = True) -> dict:
    """k sampled answers per prompt and checkpoint, judged. The prompts go in fixed groups of
    batch_size // k (one decoding batch of batch_size rows); a group's answers commit together, its seed
    is a hash of checkpoint and prompt ids, so a rerun skips finished groups and redraws the same answers
    for an interrupted one."""
    from tqdm.auto import tqdm

    from .generate import sample_answers

    keys = register_sampling(recipe, db)
    k = len(keys)
    ids, text = prompts["id"].tolist(), dict(zip(prompts["id"], prompts["text"]))
    per_batch = max(1, recipe.eval.batch_size // k)
    groups = [ids[s:s + per_batch] for s in range(0, len(ids), per_batch)]
    with store.reader(db) as con:
        done = {i.id: set(ids) - set(missing_prompts(con, i.fingerprint, keys[-1], ids)) for i in infos}
    # a group is all done or all missing, unless batch_size or k changed since: then only its missing prompts
    todo = {i.id: [rest for g in groups if (rest := [p for p in g if p not in done[i.id]])] for i in infos}
    bar = tqdm(total=sum(len(g) for gs in todo.values() for g in gs), desc="eval: sampling", unit="prompt",
               disable=not progress)
    new = 0
    for info in infos:
        point_at(engine, info)
        bar.set_postfix(checkpoint=info.id)
        for group in todo[info.id]:
            seed = int(hashlib.sha256(":".join([info.fingerprint, *group]).encode()).hexdigest()[:8], 16)
            answers = sample_answers(engine, [text[p] for p in group], k, recipe.eval.max_new_tokens,
                                     recipe.eval.temperature, seed)
            rows = pd.DataFrame([{"checkpoint_fp": info.fingerprint, "checkpoint_id": info.id, "prompt_id": pid,
                                  "gen_key": key, "response": g.response, "n_tokens": g.n_tokens, "seconds": g.seconds}
                                 for pid, outs in zip(group, answers) for key, g in zip(keys, outs)])
            commit_judged(rows, [text[p] for p in rows["prompt_id"]], judges, db)
            new += len(rows)
            bar.update(len(group))
    bar.close()
    return {"generated": new, "judged": new * len(judges)}
