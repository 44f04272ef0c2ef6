"""One training run: a LoRA adapter trained on L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe.

Reference log-probabilities (π_ref = base model, adapters off) depend only on the pairs, so they
are computed once per pair set, cached next to it, and shared by every point of a sweep.
Output: checkpoints/<sweep>/<run-id>/ with the PEFT adapter (fp16 safetensors), manifest.json and
README.md (model card), written to a temp dir and renamed only when complete.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .atomic import atomic_directory
from .config import ROOT, ConfigError, Recipe
from .losses import IGNORE_INDEX, helpful_loss, lm_loss, safe_loss, sequence_logps, total_loss
from .model import Base, chat_prompt
from .pairs import PairSet

ADAPTER_FILE = "adapter_model.safetensors"


class TrainingDiverged(RuntimeError):
    pass


def code_version() -> str:
    """git commit if available (plus '+dirty'), else a hash of the package sources."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "explorer"], cwd=ROOT, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        if rev:
            return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    h = hashlib.sha256()
    for f in sorted((ROOT / "explorer").glob("*.py")):
        h.update(f.read_bytes())
    return "src-" + h.hexdigest()[:10]


def run_id(lambda_safe: float, lambda_helpful: float) -> str:
    return f"s{lambda_safe:g}-h{lambda_helpful:g}"


# ---------------------------------------------------------------- tokenisation

@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt


def encode_example(tokenizer, prompt: str, response: str, max_prompt: int, max_response: int) -> Example:
    p = tokenizer(chat_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"][-max_prompt:]
    r = tokenizer(response, add_special_tokens=False)["input_ids"][:max_response - 1] + [tokenizer.eos_token_id]
    # im_end closes the turn in SmolLM's template; eos_token is <|im_end|> there, so the model learns to stop
    return Example(p + r, [IGNORE_INDEX] * len(p) + r)


def collate(examples: list[Example], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels, all (B, T); plus keep = how many final
    positions need logits (from the shortest prompt on; the lm_head over 49k words is ~20% of a step)."""
    t = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), t), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), t), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), t), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    first_target = min(e.labels.index(next(x for x in e.labels if x != IGNORE_INDEX)) for e in examples)
    keep = t - first_target + 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels[:, t - keep:].to(device),
            "keep": keep}


@dataclass(frozen=True)
class EncodedPairs:
    safe_chosen: list[Example]
    safe_rejected: list[Example]
    safe_severity: torch.Tensor  # (N_safe,)
    helpful_chosen: list[Example]
    helpful_rejected: list[Example]
    lm: list[Example]


def encode_pairs(tokenizer, ps: PairSet, recipe: Recipe) -> EncodedPairs:
    t = recipe.train

    def enc(prompt, response):
        return encode_example(tokenizer, prompt, response, t.max_prompt_tokens, t.max_response_tokens)

    if not ps.safe or not ps.helpful or not ps.lm:
        raise ConfigError(f"pair set {ps.fingerprint} has an empty part ({ps.stats}); rebuild with `python -m explorer pairs`")
    severity = [p.severity if recipe.loss.severity_weighting else 1.0 for p in ps.safe]
    return EncodedPairs([enc(p.prompt, p.chosen) for p in ps.safe], [enc(p.prompt, p.rejected) for p in ps.safe],
                        torch.tensor(severity), [enc(p.prompt, p.chosen) for p in ps.helpful],
                        [enc(p.prompt, p.rejected) for p in ps.helpful], [enc(x["prompt"], x["response"]) for x in ps.lm])


# ---------------------------------------------------------------- reference log-probs

@torch.no_grad()
def _logps(model, examples: list[Example], pad_id: int, device, batch: int = 16, dtype_setting: str = "auto") -> torch.Tensor:
    out = []
    for i in range(0, len(examples), batch):
        b = collate(examples[i:i + batch], pad_id, device)
        with _autocast(device, dtype_setting):
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], logits_to_keep=b["keep"]).logits
        out.append(sequence_logps(logits, b["labels"]).float().cpu())
    return torch.cat(out)


def reference_logps(base: Base, enc: EncodedPairs, fingerprint: str, use_cache: bool = True,
                    directory: Path | None = None, dtype_setting: str = "auto") -> dict[str, torch.Tensor]:
    """log π_ref of every chosen/rejected response, (N,) each; cached as safetensors per pair set."""
    from safetensors.torch import load_file, save_file

    from . import pairs

    directory = Path(directory or pairs.PAIRS_DIR)
    path = directory / f"ref-{fingerprint}-{base.fingerprint}.safetensors"
    if use_cache and path.is_file():
        return load_file(path)
    pad = base.tokenizer.pad_token_id
    ref = {name: _logps(base.model, getattr(enc, name), pad, base.device, dtype_setting=dtype_setting)
           for name in ("safe_chosen", "safe_rejected", "helpful_chosen", "helpful_rejected")}
    if use_cache:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(ref, str(tmp))
        tmp.replace(path)
    return ref


# ---------------------------------------------------------------- training

@dataclass
class RunResult:
    directory: Path
    manifest: dict


def _autocast(device: torch.device, dtype_setting: str = "auto"):
    # bf16 matmuls with fp32 master weights: on CUDA always; on CPU when the CPU has bf16 units
    # (~1.8x faster per step here). `model.dtype: float32` turns it off for bit-exact CPU runs.
    wanted = dtype_setting in ("auto", "bfloat16")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=wanted and (device.type == "cuda" or _cpu_bf16()))


def _cpu_bf16() -> bool:
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text() or "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def train_step_losses(model, enc: EncodedPairs, ref: dict, idx_safe, idx_helpful, idx_lm, recipe: Recipe,
                      lambda_safe: float, lambda_helpful: float, pad_id: int, device):
    """One forward pass over [safe chosen, safe rejected, helpful chosen, helpful rejected, LM] → LossTerms."""
    seqs = ([enc.safe_chosen[i] for i in idx_safe] + [enc.safe_rejected[i] for i in idx_safe]
            + [enc.helpful_chosen[i] for i in idx_helpful] + [enc.helpful_rejected[i] for i in idx_helpful]
            + [enc.lm[i] for i in idx_lm])
    b = collate(seqs, pad_id, device)
    with _autocast(device, recipe.model.dtype):
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       logits_to_keep=b["keep"]).logits  # (B, keep, V)
    ns, nh = len(idx_safe), len(idx_helpful)
    logps = sequence_logps(logits[:2 * ns + 2 * nh], b["labels"][:2 * ns + 2 * nh])
    s_c, s_r = logps[:ns], logps[ns:2 * ns]
    h_c, h_r = logps[2 * ns:2 * ns + nh], logps[2 * ns + nh:]
    isafe, ihelp = torch.tensor(idx_safe), torch.tensor(idx_helpful)
    beta, kind = recipe.loss.beta, recipe.loss.preference
    l_safe = safe_loss(s_c, s_r, ref["safe_chosen"][isafe].to(device), ref["safe_rejected"][isafe].to(device), beta,
                       enc.safe_severity[isafe].to(device), kind)
    l_help = helpful_loss(h_c, h_r, ref["helpful_chosen"][ihelp].to(device), ref["helpful_rejected"][ihelp].to(device),
                          beta, kind)
    l_lm = lm_loss(logits[2 * ns + 2 * nh:], b["labels"][2 * ns + 2 * nh:])
    return total_loss(l_lm, l_help, l_safe, lambda_helpful=lambda_helpful, lambda_safe=lambda_safe), int(b["attention_mask"].sum())


def train_run(base: Base, ps: PairSet, recipe: Recipe, out_dir: Path, ref: dict | None = None,
              progress: bool = True, on_step: Callable[[int, dict], None] | None = None,
              dual: Callable[[object], float] | None = None) -> RunResult:
    """Train one adapter at (recipe.loss.lambda_safe, recipe.loss.lambda_helpful) and save it atomically.

    `dual`, if given, is the constrained mode: every sweep.dual_every steps it returns a violation
    estimate v̂ and λ_safe follows log λ ← log λ + η·(v̂ − ε) (Safe RLHF keeps λ in log space).
    """
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if (out_dir / "manifest.json").is_file():
        raise ConfigError(f"{out_dir} already holds a finished run; delete it to retrain")
    torch.manual_seed(recipe.train.seed)
    random.seed(recipe.train.seed)
    enc = encode_pairs(base.tokenizer, ps, recipe)
    t_ref = time.perf_counter()
    ref = ref if ref is not None else reference_logps(base, enc, ps.fingerprint, dtype_setting=recipe.model.dtype)
    t_ref = time.perf_counter() - t_ref
    lc = recipe.lora
    peft_model = get_peft_model(base.model, PeftLoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                           target_modules=list(lc.target_modules), task_type="CAUSAL_LM"))
    try:
        return _optimise(peft_model, base, enc, ref, ps, recipe, out_dir, progress, on_step, dual, t0, t_ref)
    finally:
        peft_model.unload()  # give the shared base model back without LoRA layers, for the next run


def _optimise(peft_model, base, enc, ref, ps, recipe, out_dir, progress, on_step, dual, t0, t_ref) -> RunResult:
    from tqdm.auto import tqdm

    t = recipe.train
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, t.warmup_steps)))
    gen = torch.Generator().manual_seed(t.seed)
    lam_s, lam_h = recipe.loss.lambda_safe, recipe.loss.lambda_helpful
    log_lam = math.log(max(lam_s, 1e-3))
    history, lam_trajectory, tokens = [], [], 0
    peft_model.train()
    bar = tqdm(range(t.steps), desc=f"train {run_id(lam_s, lam_h)}", disable=not progress, leave=False)
    t_train = time.perf_counter()
    for step in bar:
        pick = lambda n, k: torch.randint(0, n, (k,), generator=gen).tolist()  # noqa: E731
        terms, n_tok = train_step_losses(peft_model, enc, ref, pick(len(enc.safe_chosen), t.batch_pairs),
                                         pick(len(enc.helpful_chosen), t.batch_pairs), pick(len(enc.lm), t.batch_lm),
                                         recipe, lam_s, lam_h, base.tokenizer.pad_token_id, base.device)
        if not torch.isfinite(terms.total):
            raise TrainingDiverged(f"step {step}: L_total is {float(terms.total)} ({terms.as_floats()}); "
                                   "lower train.lr or loss.beta; no checkpoint was written")
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        tokens += n_tok
        rec = {"step": step, **terms.as_floats(), "lambda_safe": lam_s}
        history.append(rec)
        bar.set_postfix(total=f"{rec['total']:.3f}", safe=f"{rec['safe']:.3f}", helpful=f"{rec['helpful']:.3f}")
        if on_step:
            on_step(step, rec)
        if dual is not None and (step + 1) % recipe.sweep.dual_every == 0:
            peft_model.eval()
            v_hat = dual(peft_model)
            peft_model.train()
            log_lam += recipe.sweep.dual_lr * (v_hat - recipe.sweep.target_violation)
            lam_s = math.exp(log_lam)
            lam_trajectory.append({"step": step, "violation_estimate": v_hat, "lambda_safe": lam_s})
    train_s = time.perf_counter() - t_train
    peft_model.eval()
    manifest = {
        "run_id": run_id(recipe.loss.lambda_safe, recipe.loss.lambda_helpful),
        "lambda_safe": recipe.loss.lambda_safe, "lambda_helpful": recipe.loss.lambda_helpful,
        "final_lambda_safe": lam_s, "lambda_trajectory": lam_trajectory,
        "recipe": recipe.to_dict(), "recipe_source": recipe.source,
        "pairs_fingerprint": ps.fingerprint, "pairs_stats": ps.stats,
        "base_model": base.name, "base_fingerprint": base.fingerprint, "code_version": code_version(),
        "device": str(base.device), "torch": torch.__version__,
        "loss_summary": _summarise(history), "loss_history": history,
        "wall_time_s": {"reference_logps": round(t_ref, 2), "train": round(train_s, 2),
                        "total": round(time.perf_counter() - t0, 2)},
        "train_tokens_per_s": round(tokens / train_s, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_checkpoint(peft_model, manifest, out_dir)
    return RunResult(out_dir, json.loads((out_dir / "manifest.json").read_text()))


def _summarise(history: list[dict]) -> dict:
    out = {}
    for k in ("total", "lm", "helpful", "safe"):
        vals = [h[k] for h in history]
        tail = vals[-max(1, len(vals) // 5):]
        out[k] = {"first": round(vals[0], 4), "last_mean": round(sum(tail) / len(tail), 4)}
    return out


def save_checkpoint(peft_model, manifest: dict, out_dir: Path) -> None:
    """Adapter (fp16 safetensors) + manifest + model card into a temp dir, then one rename."""
    from safetensors.torch import load_file, save_file

    with atomic_directory(out_dir) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        weights = load_file(str(tmp / ADAPTER_FILE))
        # fp16 storage halves the adapter; it is upcast to the model's dtype on load
        save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(tmp / ADAPTER_FILE),
                  metadata={"format": "pt", "base_fingerprint": manifest["base_fingerprint"]})
        manifest = {**manifest, "adapter_sha256": adapter_digest(tmp / ADAPTER_FILE)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (tmp / "README.md").write_text(model_card(manifest))


def adapter_digest(path: Path) -> str:
    """sha256 over tensor names and bytes, in sorted order. Not the file's hash: safetensors writes
    its header metadata in hash-map order, so identical weights can give different files."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_card(m: dict) -> str:
    s = m["loss_summary"]
    return f"""# {m['run_id']}

LoRA adapter for {m['base_model']} (base fingerprint `{m['base_fingerprint']}`), trained with

    L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe,   λ_safe = {m['lambda_safe']}, λ_helpful = {m['lambda_helpful']}

- pairs: `{m['pairs_fingerprint']}` ({m['pairs_stats'].get('n_safe')} safety pairs, {m['pairs_stats'].get('n_helpful')} helpfulness pairs, {m['pairs_stats'].get('n_lm')} LM sequences)
- steps: {m['recipe']['train']['steps']}, lr {m['recipe']['train']['lr']}, β {m['recipe']['loss']['beta']} ({m['recipe']['loss']['preference']}), LoRA r={m['recipe']['lora']['r']}
- loss (first → mean of last 20%): total {s['total']['first']} → {s['total']['last_mean']}, L_safe {s['safe']['first']} → {s['safe']['last_mean']}, L_helpful {s['helpful']['first']} → {s['helpful']['last_mean']}, L_LM {s['lm']['first']} → {s['lm']['last_mean']}
- wall time: {m['wall_time_s']['total']} s on {m['device']}; code {m['code_version']}

Research artefact for exploring the safety/helpfulness trade-off; not a safe model. Load with
`PeftModel.from_pretrained(base, this_dir)`.
"""
