"""Training data from the train split: L_safe pairs, L_helpful pairs and L_LM sequences.

Context distillation: the base model writes both sides. The refusal side is generated under a
system prompt that states the spec, with the assistant turn opened by a refusal phrase (a 135M
model does not refuse from a system prompt alone, see the note in pairs_report); the compliant /
helpful side is the base model's own answer without it. Pairs whose chosen side the keyword judge
does not call a full refusal fall back to hand-written refusal styles; pairs whose "compliant" side
is judged a refusal are dropped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .config import ROOT, Recipe
from .judges import KeywordJudge
from .spec import Spec, load_spec

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
    t = recipe.train
    payload = json.dumps({"prompts": pd.util.hash_pandas_object(prompts[["id", "text", "split"]], index=False).sum().item(),
                          "n": [t.n_safe_pairs, t.n_helpful_pairs, t.n_lm, t.seed, t.max_response_tokens],
                          "base": base_fingerprint, "systems": [SPEC_SYSTEM, UNSURE_SYSTEM, REFUSAL_OPENERS,
                                                                FALLBACK_REFUSALS, ALTERNATIVES]})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def refusal_for(category: str, spec: Spec, k: int) -> str:
    text = FALLBACK_REFUSALS[k % len(FALLBACK_REFUSALS)]
    if spec.harm.get(category) and spec.harm[category].behaviour == "refuse_with_alternative":
        text += " " + ALTERNATIVES.get(category, "I'm happy to help with a safer version of this question.")
    return text


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

    stats = {"safe_dropped_rejected_is_refusal": 0, "safe_fallback_chosen": 0,
             "helpful_dropped_chosen_is_refusal": 0, "helpful_fallback_rejected": 0}
    safe = []
    for k, (r, comp, ref) in enumerate(zip(harmful.itertuples(), comply_h, refuse_h)):
        if judge.judge_one(comp).label != "full_compliance":
            stats["safe_dropped_rejected_is_refusal"] += 1
            continue
        source = "distilled"
        if judge.judge_one(ref).label != "full_refusal":
            ref, source = refusal_for(r.category, spec, k), "fallback"
            stats["safe_fallback_chosen"] += 1
        elif spec.harm[r.category].behaviour == "refuse_with_alternative":
            ref += " " + ALTERNATIVES.get(r.category, "I'm happy to help with a safer version of this question.")
        safe.append(Pair(r.id, r.text, ref, comp, r.category, spec.harm[r.category].severity, source))
    helpful = []
    for k, (r, ans, ref) in enumerate(zip(benign.itertuples(), answer_b, refuse_b)):
        if judge.judge_one(ans).label != "full_compliance":
            stats["helpful_dropped_chosen_is_refusal"] += 1
            continue
        source = "distilled"
        if judge.judge_one(ref).label != "full_refusal":
            ref, source = FALLBACK_REFUSALS[k % len(FALLBACK_REFUSALS)], "fallback"
            stats["helpful_fallback_rejected"] += 1
        helpful.append(Pair(r.id, r.text, ans, ref, r.category, 1.0, source))
    lm = [{"prompt_id": r.id, "prompt": r.text, "response": a} for r, a in zip(general.itertuples(), answer_g)]
    stats.update(n_safe=len(safe), n_helpful=len(helpful), n_lm=len(lm))
    return PairSet(safe, helpful, lm, fingerprint_inputs(prompts, recipe, base.fingerprint), stats)


def save_pairs(ps: PairSet, directory: Path | None = None) -> Path:
    directory = Path(directory or PAIRS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"pairs-{ps.fingerprint}.json"
    payload = {"fingerprint": ps.fingerprint, "stats": ps.stats, "safe": [asdict(p) for p in ps.safe],
               "helpful": [asdict(p) for p in ps.helpful], "lm": ps.lm}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


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
