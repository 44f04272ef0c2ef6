"""One training run: a LoRA adapter trained on L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe.

Reference log-probabilities (π_ref = base model, adapters off) depend only on the pairs, so they
are computed once per pair set, cached next to it, and shared by every point of a sweep.
The finished adapter is written by checkpoints.save_checkpoint (adapter, manifest, model card,
renamed into place only when complete).
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .atomic import atomic_file
from .checkpoints import MANIFEST_FILE, code_version, run_id, save_checkpoint, variant_of
from .config import ConfigError, Recipe
from .losses import IGNORE_INDEX, LossTerms, helpful_loss, lm_loss, safe_loss, sequence_logps, total_loss
from .model import Base, chat_prompt
from .pairs import PairSet


class TrainingDiverged(RuntimeError):
    pass


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
        with atomic_file(path) as tmp:
            save_file(ref, str(tmp))
    return ref


# ---------------------------------------------------------------- training

@dataclass(frozen=True)
class RunResult:
    directory: Path
    manifest: dict


@dataclass(frozen=True)
class StepLosses:
    terms: LossTerms  # every part of L_total, for the backward pass and the log
    n_tokens: int  # non-padding tokens in the step's batch (throughput)


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
                      lambda_safe: float, lambda_helpful: float, pad_id: int, device) -> StepLosses:
    """One forward pass over [safe chosen, safe rejected, helpful chosen, helpful rejected, LM]."""
    seqs = ([enc.safe_chosen[i] for i in idx_safe] + [enc.safe_rejected[i] for i in idx_safe]
            + [enc.helpful_chosen[i] for i in idx_helpful] + [enc.helpful_rejected[i] for i in idx_helpful]
            + [enc.lm[i] for i in idx_lm])
    b = collate(seqs, pad_id, device)
    with _autocast(device, recipe.model.dtype):
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       logits_to_keep=b["keep"]).logits  # (B, keep, V)
    ns, nh = len(idx_safe), len(idx_helpful)
    n_pref = 2 * ns + 2 * nh
    logps = sequence_logps(logits[:n_pref], b["labels"][:n_pref])  # (n_pref,)
    s_c, s_r = logps[:ns], logps[ns:2 * ns]
    h_c, h_r = logps[2 * ns:2 * ns + nh], logps[2 * ns + nh:]
    isafe, ihelp = torch.tensor(idx_safe), torch.tensor(idx_helpful)
    beta, form = recipe.loss.beta, recipe.loss.preference
    l_safe = safe_loss(s_c, s_r, ref["safe_chosen"][isafe].to(device), ref["safe_rejected"][isafe].to(device), beta,
                       enc.safe_severity[isafe].to(device), form)
    l_help = helpful_loss(h_c, h_r, ref["helpful_chosen"][ihelp].to(device), ref["helpful_rejected"][ihelp].to(device),
                          beta, form)
    l_lm = lm_loss(logits[n_pref:], b["labels"][n_pref:])
    terms = total_loss(l_lm, l_help, l_safe, lambda_helpful=lambda_helpful, lambda_safe=lambda_safe)
    return StepLosses(terms, int(b["attention_mask"].sum()))


@dataclass
class DualAscent:
    """λ_safe as the Lagrange multiplier of E[violation] ≤ ε, updated by dual ascent every `every` steps:
    log λ ← log λ + η·(v̂ − ε). Kept in log space as Safe RLHF does, so λ stays positive and moves by
    factors. `estimate(model)` returns v̂, a violation rate measured on held-out prompts."""
    estimate: Callable[[object], float]
    target: float  # ε
    lr: float  # η
    every: int
    log_lambda: float
    trajectory: list[dict] = field(default_factory=list)

    @property
    def lambda_safe(self) -> float:
        return math.exp(self.log_lambda)

    def after_step(self, step: int, model) -> None:
        if (step + 1) % self.every:
            return
        model.eval()
        v_hat = self.estimate(model)
        model.train()
        self.log_lambda += self.lr * (v_hat - self.target)
        self.trajectory.append({"step": step, "violation_estimate": v_hat, "lambda_safe": self.lambda_safe})


@dataclass(frozen=True)
class Fit:
    history: list[dict]  # one record per step: every loss term and the λ_safe it used
    final_lambda_safe: float
    tokens: int
    seconds: float


def train_run(base: Base, ps: PairSet, recipe: Recipe, out_dir: Path, ref: dict | None = None,
              progress: bool = True, on_step: Callable[[int, dict], None] | None = None,
              dual: Callable[[object], float] | None = None) -> RunResult:
    """Train one adapter at (recipe.loss.lambda_safe, recipe.loss.lambda_helpful) and save it atomically.

    `dual`, if given, is the constrained mode: a violation estimator v̂ driving λ_safe (DualAscent).
    """
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST_FILE).is_file():
        raise ConfigError(f"{out_dir} already holds a finished run; delete it to retrain")
    torch.manual_seed(recipe.train.seed)
    random.seed(recipe.train.seed)
    enc = encode_pairs(base.tokenizer, ps, recipe)
    t_ref = time.perf_counter()
    ref = ref if ref is not None else reference_logps(base, enc, ps.fingerprint, dtype_setting=recipe.model.dtype)
    t_ref = time.perf_counter() - t_ref
    ascent = None if dual is None else DualAscent(dual, recipe.sweep.target_violation, recipe.sweep.dual_lr,
                                                  recipe.sweep.dual_every,
                                                  math.log(max(recipe.loss.lambda_safe, 1e-3)))
    lc = recipe.lora
    peft_model = get_peft_model(base.model, PeftLoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                           target_modules=list(lc.target_modules), task_type="CAUSAL_LM"))
    try:
        fit = _fit(peft_model, base, enc, ref, recipe, ascent, progress, on_step)
        peft_model.eval()
        manifest = _manifest(recipe, ps, base, fit, ascent, {"reference_logps": t_ref, "train": fit.seconds,
                                                               "total": time.perf_counter() - t0})
        save_checkpoint(peft_model, manifest, out_dir)
        return RunResult(out_dir, json.loads((out_dir / MANIFEST_FILE).read_text()))  # as a reader sees it
    finally:
        peft_model.unload()  # give the shared base model back without LoRA layers, for the next run


def _fit(peft_model, base: Base, enc: EncodedPairs, ref: dict, recipe: Recipe, ascent: DualAscent | None,
         progress: bool, on_step: Callable[[int, dict], None] | None) -> Fit:
    """The optimisation loop: AdamW with linear warm-up, clipped gradients, random batches per term."""
    from tqdm.auto import tqdm

    t = recipe.train
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, t.warmup_steps)))
    gen = torch.Generator().manual_seed(t.seed)

    def pick(n: int, k: int) -> list[int]:
        return torch.randint(0, n, (k,), generator=gen).tolist()

    lam_s, lam_h = recipe.loss.lambda_safe, recipe.loss.lambda_helpful
    history, tokens = [], 0
    peft_model.train()
    bar = tqdm(range(t.steps), desc=f"train {run_id(lam_s, lam_h)}", disable=not progress, leave=False)
    t_train = time.perf_counter()
    for step in bar:
        out = train_step_losses(peft_model, enc, ref, pick(len(enc.safe_chosen), t.batch_pairs),
                                pick(len(enc.helpful_chosen), t.batch_pairs), pick(len(enc.lm), t.batch_lm),
                                recipe, lam_s, lam_h, base.tokenizer.pad_token_id, base.device)
        if not torch.isfinite(out.terms.total):
            raise TrainingDiverged(f"step {step}: L_total is {float(out.terms.total)} ({out.terms.as_floats()}); "
                                   "lower train.lr or loss.beta; no checkpoint was written")
        opt.zero_grad(set_to_none=True)
        out.terms.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        tokens += out.n_tokens
        rec = {"step": step, **out.terms.as_floats(), "lambda_safe": lam_s}
        history.append(rec)
        bar.set_postfix(total=f"{rec['total']:.3f}", safe=f"{rec['safe']:.3f}", helpful=f"{rec['helpful']:.3f}")
        if on_step:
            on_step(step, rec)
        if ascent is not None:
            ascent.after_step(step, peft_model)
            lam_s = ascent.lambda_safe
    return Fit(history, lam_s, tokens, time.perf_counter() - t_train)


def _manifest(recipe: Recipe, ps: PairSet, base: Base, fit: Fit, ascent: DualAscent | None,
              wall_time_s: dict[str, float]) -> dict:
    """Everything needed to trace the adapter back to its recipe, data, base model and code."""
    return {
        "run_id": run_id(recipe.loss.lambda_safe, recipe.loss.lambda_helpful, variant_of(recipe.to_dict()["loss"])),
        "lambda_safe": recipe.loss.lambda_safe, "lambda_helpful": recipe.loss.lambda_helpful,
        "final_lambda_safe": fit.final_lambda_safe, "lambda_trajectory": ascent.trajectory if ascent else [],
        "recipe": recipe.to_dict(), "recipe_source": recipe.source,
        "pairs_fingerprint": ps.fingerprint, "pairs_stats": ps.stats,
        "base_model": base.name, "base_fingerprint": base.fingerprint, "code_version": code_version(),
        "device": str(base.device), "torch": torch.__version__,
        "loss_summary": _summarise(fit.history), "loss_history": fit.history,
        "wall_time_s": {k: round(v, 2) for k, v in wall_time_s.items()},
        "train_tokens_per_s": round(fit.tokens / fit.seconds, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _summarise(history: list[dict]) -> dict:
    out = {}
    for k in ("total", "lm", "helpful", "safe"):
        vals = [h[k] for h in history]
        tail = vals[-max(1, len(vals) // 5):]
        out[k] = {"first": round(vals[0], 4), "last_mean": round(sum(tail) / len(tail), 4)}
    return out
