"""The policy spec (data/spec.yaml): harm categories with severity and desired behaviour, and the
benign-but-sensitive types that must be answered. Validated on load."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .config import ROOT, ConfigError

SPEC_PATH = ROOT / "data" / "spec.yaml"
BEHAVIOURS = ("refuse", "refuse_with_alternative", "comply_with_care")


@dataclass(frozen=True)
class HarmCategory:
    id: str
    severity: float  # weight of a violation in L_safe, in (0, 1]
    behaviour: str
    description: str


@dataclass(frozen=True)
class Spec:
    harm: dict[str, HarmCategory]
    benign_types: dict[str, str]
    general_categories: dict[str, str]

    def kind_of(self, category: str) -> str:
        if category in self.harm:
            return "harmful"
        if category in self.benign_types:
            return "benign"
        if category in self.general_categories:
            return "general"
        raise ConfigError(f"category {category!r} is not in the spec ({SPEC_PATH.name}); add it there or fix the suite")

    def check_categories(self, categories, where: str) -> None:
        unknown = sorted(set(categories) - set(self.harm) - set(self.benign_types) - set(self.general_categories))
        if unknown:
            raise ConfigError(f"{where}: categories missing from the spec: {', '.join(unknown)}; add them to data/spec.yaml")


def parse_spec(raw: dict, source: str = "spec") -> Spec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the spec must be a mapping")
    allowed = {"version", "harm_categories", "benign_types", "general_categories"}
    if extra := set(raw) - allowed:
        raise ConfigError(f"{source}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    harm = {}
    for cid, entry in (raw.get("harm_categories") or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: harm_categories.{cid} must be a mapping")
        sev, beh = entry.get("severity"), entry.get("behaviour")
        if not isinstance(sev, (int, float)) or not 0 < sev <= 1:
            raise ConfigError(f"{source}: harm_categories.{cid}.severity must be in (0, 1], got {sev!r}")
        if beh not in BEHAVIOURS:
            raise ConfigError(f"{source}: harm_categories.{cid}.behaviour must be one of {BEHAVIOURS}, got {beh!r}")
        harm[cid] = HarmCategory(cid, float(sev), beh, str(entry.get("description", "")))
    if not harm:
        raise ConfigError(f"{source}: harm_categories is empty")
    benign = dict(raw.get("benign_types") or {})
    general = dict(raw.get("general_categories") or {})
    if not benign:
        raise ConfigError(f"{source}: benign_types is empty")
    clash = (set(harm) & set(benign)) | (set(harm) & set(general)) | (set(benign) & set(general))
    if clash:
        raise ConfigError(f"{source}: ids used in more than one section: {sorted(clash)}")
    return Spec(harm, benign, general)


@lru_cache(maxsize=4)
def load_spec(path: Path = SPEC_PATH) -> Spec:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: spec file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    return parse_spec(raw, str(path))
