"""Training data from the train split: L_safe pairs, L_helpful pairs and L_LM sequences.

Context distillation: the base model writes both sides. The refusal side is generated under a
system prompt that states the spec, with the assistant turn opened by a refusal phrase (a 135M
model given the system prompt alone almost never refuses); the compliant / helpful side is the base
model's own answer without it. Refusals the keyword judge does not call a full refusal fall back to
hand-written refusal styles; pairs whose answer side is judged a refusal are dropped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .atomic import write_text
from .config import ROOT, Recipe
from .judges import KeywordJudge
from .spec import Spec, load_spec
from .suites import training_view

PAIRS_DIR = ROOT / "data" / "pairs"

SPEC_SYSTEM = ("You follow a safety policy. Refuse requests that could help someone hurt people, commit crimes, "
               "harass, deceive, invade privacy or produce sexual content; keep refusals short and polite, and "
               "offer a safe alternative when one exists. Answer everything else helpfully.")
UNSURE_SYSTEM = "You are extremely cautious. If a request mentions anything that could possibly be risky, refuse it."

# Refusal openers the distilled continuation starts from, and hand-written fallbacks per behaviour.
REFUSAL_OPENERS = [
    "I'm sorry, but I can't help with that.",
    "I can't help with that request.",
    "Sorry, I won't be able to help with this.",
    "I'm not able to help with that.",
    "I must decline this request.",
    "I can't assist with that.",
]
ALTERNATIVES = {
    "self_harm": "If you are struggling, please reach out to someone you trust or a local crisis line; you don't have to face this alone.",
    "misinformation": "If you like, I can share what reliable sources say about this topic instead.",
    "drugs": "If you or someone you know is using substances, a doctor or a harm-reduction service can help safely.",
}
SAFER_VERSION = "I'm happy to help with a safer version of this question."  # alternative of other categories
FALLBACK_REFUSALS = [
    "I'm sorry, but I can't help with that. It could cause real harm.",
    "I can't help with that request, because it could be used to hurt people or break the law.",
    "Sorry, I won't help with this. Is there something else I can do for you?",
    "I'm not able to help with that. If you have a different question, I'm happy to help.",
    "I must decline this request, as it goes against my safety guidelines.",
    "I can't assist with that, but I'm glad to help with something else.",
]


@dataclass(frozen=True)
class Pair:
    prompt_id: str
    prompt: str
    chosen: str
    rejected: str
    category: str
    severity: float
    source: str  # how the chosen side was made: distilled | fallback


@dataclass(frozen=True)
class PairSet:
    safe: list[Pair]
    helpful: list[Pair]
    lm: list[dict]  # {"prompt_id", "prompt", "response"}
    fingerprint: str
    stats: dict


def _pick(prompts: pd.DataFrame, kinds: tuple[str, ...], n: int, seed: int) -> pd.DataFrame:
    """n train prompts of the given kinds, in a stable pseudo-random order (by hash of id and seed)."""
    df = prompts[(prompts["split"] == "train") & prompts["kind"].isin(kinds)].copy()
    df["_order"] = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in df["id"]]
    return df.sort_values("_order").head(n).drop(columns="_order")


def fingerprint_inputs(prompts: pd.DataFrame, recipe: Recipe, base_fingerprint: str) -> str:
    """What the pairs depend on: the prompts training may draw from (suites.training_view), the counts,
    the base model and the texts that shape both sides."""
    t = recipe.train
    prompts = training_view(prompts, t.intent_twins)
    payload = json.dumps({"prompts": pd.util.hash_pandas_object(prompts[["id", "text", "split"]], index=False).sum().item(),
                          "n": [t.n_safe_pairs, t.n_helpful_pairs, t.n_lm, t.seed, t.max_response_tokens],
                          "base": base_fingerprint, "systems": [SPEC_SYSTEM, UNSURE_SYSTEM, REFUSAL_OPENERS,
                                                                FALLBACK_REFUSALS, ALTERNATIVES]})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def with_alternative(refusal: str, category: str, spec: Spec) -> str:
    """The spec asks some harm categories to be declined with a safe alternative: append it."""
    harm = spec.harm.get(category)
    if harm and harm.behaviour == "refuse_with_alternative":
        return f"{refusal} {ALTERNATIVES.get(category, SAFER_VERSION)}"
    return refusal


def _distilled_refusals(base, prompts: list[str], system: str, max_tokens: int) -> list[str]:
    """Refusals the base model writes itself: system prompt + a refusal opener to continue from."""
    from .generate import generate_many

    openers = [REFUSAL_OPENERS[k % len(REFUSAL_OPENERS)] for k in range(len(prompts))]
    outs = generate_many(base, prompts, max_tokens, system=system, prefills=[o + " " for o in openers])
    result = []
    for opener, g in zip(openers, outs):
        # keep only the first sentence of the continuation: it explains or redirects; beyond that a
        # 135M model tends to drift into the very content it declined
        first = g.response.split("\n")[0].split(". ")[0].strip()
        result.append(opener if not first else f"{opener} {first.rstrip('.')}.")
    return result


def build_pairs(base, prompts: pd.DataFrame, recipe: Recipe, spec: Spec | None = None, progress: bool = True) -> PairSet:
    from tqdm.auto import tqdm

    from .generate import generate_many

    spec = spec or load_spec()
    t = recipe.train
    judge = KeywordJudge()
    prompts = training_view(prompts, t.intent_twins)
    harmful = _pick(prompts, ("harmful",), t.n_safe_pairs, t.seed)
    benign = _pick(prompts, ("benign", "general"), t.n_helpful_pairs, t.seed)
    general = _pick(prompts[~prompts["id"].isin(benign["id"])], ("general",), t.n_lm, t.seed)
    total = len(harmful) * 2 + len(benign) * 2 + len(general)
    bar = tqdm(total=total, desc="pairs: base-model generations", disable=not progress)

    def gen(texts, system=None):
        return [g.response for g in generate_many(base, texts, t.max_response_tokens, system=system, progress=bar)]

    comply_h = gen(harmful["text"].tolist())
    refuse_h = _distilled_refusals(base, harmful["text"].tolist(), SPEC_SYSTEM, 24); bar.update(len(harmful))
    answer_b = gen(benign["text"].tolist())
    refuse_b = _distilled_refusals(base, benign["text"].tolist(), UNSURE_SYSTEM, 24); bar.update(len(benign))
    answer_g = gen(general["text"].tolist())
    bar.close()

    kept_h, dropped_h, fallback_h = _contrasts(harmful, comply_h, refuse_h, spec, judge)
    kept_b, dropped_b, fallback_b = _contrasts(benign, answer_b, refuse_b, spec, judge)
    stats = {"safe_dropped_rejected_is_refusal": dropped_h, "safe_fallback_chosen": fallback_h,
             "helpful_dropped_chosen_is_refusal": dropped_b, "helpful_fallback_rejected": fallback_b}
    # L_safe prefers the refusal of a harmful prompt, L_helpful the answer to a benign one
    safe = [Pair(r.id, r.text, refusal, answer, r.category, spec.harm[r.category].severity, source)
            for r, answer, refusal, source in kept_h]
    helpful = [Pair(r.id, r.text, answer, refusal, r.category, 1.0, source) for r, answer, refusal, source in kept_b]
    lm = [{"prompt_id": r.id, "prompt": r.text, "response": a} for r, a in zip(general.itertuples(), answer_g)]
    stats.update(n_safe=len(safe), n_helpful=len(helpful), n_lm=len(lm))
    return PairSet(safe, helpful, lm, fingerprint_inputs(prompts, recipe, base.fingerprint), stats)


def _contrasts(rows: pd.DataFrame, answers: list[str], refusals: list[str], spec: Spec,
               judge: KeywordJudge) -> tuple[list[tuple], int, int]:
    """(row, answer, refusal, source) per prompt whose answer complies: a refusal the judge does not call a
    full refusal is replaced by a hand-written one (source 'fallback'). Returns them with the numbers of
    dropped prompts and of fallbacks."""
    kept, dropped, fallbacks = [], 0, 0
    for k, (r, answer, refusal) in enumerate(zip(rows.itertuples(), answers, refusals)):
        if judge.judge_one(answer).label != "full_compliance":
            dropped += 1
            continue
        source = "distilled"
        if judge.judge_one(refusal).label != "full_refusal":
            refusal, source = FALLBACK_REFUSALS[k % len(FALLBACK_REFUSALS)], "fallback"
            fallbacks += 1
        kept.append((r, answer, with_alternative(refusal, r.category, spec), source))
    return kept, dropped, fallbacks


def save_pairs(ps: PairSet, directory: Path | None = None) -> Path:
    directory = Path(directory or PAIRS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"pairs-{ps.fingerprint}.json"
    payload = {"fingerprint": ps.fingerprint, "stats": ps.stats, "safe": [asdict(p) for p in ps.safe],
               "helpful": [asdict(p) for p in ps.helpful], "lm": ps.lm}
    return write_text(path, json.dumps(payload, indent=1, ensure_ascii=False))


def load_pairs(path: Path) -> PairSet:
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    return PairSet([Pair(**p) for p in d["safe"]], [Pair(**p) for p in d["helpful"]], d["lm"], d["fingerprint"], d["stats"])


def cached_pairs(base, prompts: pd.DataFrame, recipe: Recipe, progress: bool = True) -> PairSet:
    """Pairs for these inputs, from data/pairs/ if a set with the same fingerprint exists."""
    path = PAIRS_DIR / f"pairs-{fingerprint_inputs(prompts, recipe, base.fingerprint)}.json"
    if path.is_file():
        return load_pairs(path)
    ps = build_pairs(base, prompts, recipe, progress=progress)
    save_pairs(ps)
    return ps
