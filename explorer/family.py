"""Bring your own family: checkpoints trained elsewhere (any trainer), imported with their knob values.

`python -m explorer import-family DIR --family FILE [--name NAME] [--link]`. DIR holds one folder per
checkpoint: a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, as trl, axolotl or
plain PEFT save it) or a full Hugging Face checkpoint (config.json + *.safetensors). FILE (YAML or CSV)
gives each folder its knob values (λ_safe, λ_helpful and any other knob the team swept), the base model
(a local directory) and optionally the ε the team aims for:

    base_model: /models/my-base
    target_violation: 0.1
    checkpoints:
      run-a: {lambda_safe: 0, lambda_helpful: 0.1, beta: 0.1}
      run-b: {lambda_safe: 1, lambda_helpful: 0.1, beta: 0.1}

    folder,lambda_safe,lambda_helpful,beta,base_model      (CSV: base_model the same on every row)
    run-a,0,0.1,0.1,/models/my-base

Everything is checked before anything is written; then checkpoints/<NAME>/ is built in a temp sibling and
renamed whole: one folder per checkpoint, named like ours (s1-h0.1, plus the other knobs that vary), with
the weights copied (or linked, never modified) and our manifest (knobs, base fingerprint, weight digest)
beside them. From there `eval --checkpoints checkpoints/NAME`, `report`, and the dashboard work on it as on
the shipped sweep.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_directory
from .checkpoints import (ADAPTER_FILE, CARD_FILE, CHECKPOINTS_ROOT, MANIFEST_FILE, code_version, run_id,
                          sweep_dir, weights_digest)
from .config import SAFE_NAME, ConfigError, ModelConfig, parse_yaml, require_file

LAMBDAS = ("lambda_safe", "lambda_helpful")
KNOB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
ADAPTER_CONFIG, MODEL_CONFIG = "adapter_config.json", "config.json"
# what a full checkpoint needs beside its weights to load alone; taken from the base where it has none
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json")
# config.json fields that must match the base for a full checkpoint to be the same architecture
ARCHITECTURE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class Member:
    folder: str
    knobs: dict[str, float]  # λ_safe, λ_helpful and any other swept knob, all numbers


@dataclass(frozen=True)
class FamilySpec:
    base_model: str
    members: tuple[Member, ...]
    target_violation: float | None = None


@dataclass(frozen=True)
class Checked:
    """A member that passed every check: what it is and what to write."""
    member: Member
    source: Path
    weights: str  # "adapter" | "full"
    files: tuple[Path, ...]  # the files to copy or link (the weights and their configs)
    lora_rank: int | None = None
    digest: str = field(default="", repr=False)


# ---------------------------------------------------------------- the family file

def read_family_file(path: Path) -> FamilySpec:
    """The family file (YAML or CSV, by extension), its knobs checked to be numbers."""
    require_file(path, "family file", "a YAML or CSV family file", "family file not found")
    text = path.read_text(encoding="utf-8")
    raw = _from_csv(text, path) if path.suffix.lower() == ".csv" else _from_yaml(text, path)
    base = raw.get("base_model")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: no base_model; give the local directory of the base model the family was "
                          "trained from (base_model: /path/to/model)")
    base_path = Path(base).expanduser()
    base = str(base_path if base_path.is_absolute() or base == ModelConfig().base_model
               else (path.parent / base_path).resolve())
    eps = raw.get("target_violation")
    if eps is not None:
        eps = _number(eps, f"{path}: target_violation")
        if not 0 <= eps <= 1:
            raise ConfigError(f"{path}: target_violation {eps:g} is not a rate; give one in [0, 1]")
    members = tuple(Member(folder, _knobs(knobs, f"{path}: {folder}")) for folder, knobs in raw["checkpoints"].items())
    if not members:
        raise ConfigError(f"{path}: no checkpoints listed; give each folder its knob values")
    return FamilySpec(base, members, eps)


def _from_yaml(text: str, path: Path) -> dict:
    try:
        raw = parse_yaml(text)
    except Exception as e:  # yaml's errors, the duplicate key one included
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("checkpoints"), dict):
        raise ConfigError(f"{path}: expected a mapping with 'base_model' and 'checkpoints: {{folder: {{lambda_safe: "
                          "…, lambda_helpful: …}}}}'")
    return raw


def _from_csv(text: str, path: Path) -> dict:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "folder" not in rows[0]:
        raise ConfigError(f"{path}: expected a header with 'folder', 'lambda_safe', 'lambda_helpful' (and base_model)")
    shared = {}
    for key in ("base_model", "target_violation"):
        values = {r.pop(key, None) or None for r in rows} - {None}
        if len(values) > 1:
            raise ConfigError(f"{path}: {key} differs between rows ({', '.join(sorted(values))}); a family has one")
        shared[key] = values.pop() if values else None
    checkpoints = {}
    for i, r in enumerate(rows, start=2):
        folder = r.pop("folder")
        if folder in checkpoints:
            raise ConfigError(f"{path}: row {i}: folder {folder!r} is listed twice")
        checkpoints[folder] = r
    return {**shared, "checkpoints": checkpoints}


def _number(value, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x):
        raise ConfigError(f"{where}: {value!r} is not a number; every knob value must be a finite number")
    return x


def _knobs(knobs, where: str) -> dict[str, float]:
    if not isinstance(knobs, dict):
        raise ConfigError(f"{where}: expected its knob values as a mapping (lambda_safe: …, lambda_helpful: …)")
    if missing := [k for k in LAMBDAS if knobs.get(k) in (None, "")]:
        raise ConfigError(f"{where}: no {' or '.join(missing)}; every checkpoint needs both λs")
    if bad := [k for k in knobs if not KNOB_NAME.match(str(k))]:
        raise ConfigError(f"{where}: knob name {bad[0]!r} is not a plain name (letters, digits, _)")
    return {str(k): _number(v, f"{where}: {k}") for k, v in knobs.items() if v not in (None, "")}


# ---------------------------------------------------------------- checking the checkpoints

def check_family(directory: Path, spec: FamilySpec, allow_mixed_ranks: bool = False) -> list[Checked]:
    """Every member checked against the base and the others (ConfigError naming the first problem)."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory; give the folder that holds one folder per checkpoint")
    _check_distinct(spec)
    base_dir = _base_dir(spec.base_model)
    base = BaseShape(base_dir, json.loads((base_dir / MODEL_CONFIG).read_text()), _linear_shapes(base_dir))
    checked = [_check_member(directory / m.folder, m, base) for m in spec.members]
    ranks = {c.member.folder: c.lora_rank for c in checked if c.lora_rank is not None}
    if len(set(ranks.values())) > 1 and not allow_mixed_ranks:
        shown = ", ".join(f"{f}: r={r}" for f, r in sorted(ranks.items()))
        raise ConfigError(f"adapters of mixed LoRA rank ({shown}); the A/B-average blend between them needs one "
                          "rank: import them as separate families, or pass --allow-mixed-ranks (exact blends work)")
    return checked


def _check_distinct(spec: FamilySpec) -> None:
    seen: dict[tuple, str] = {}
    for m in spec.members:
        key = tuple(sorted(m.knobs.items()))
        if key in seen:
            raise ConfigError(f"{seen[key]!r} and {m.folder!r} have the same knob values ({_show(m.knobs)}); each "
                              "checkpoint of a family must differ in at least one knob")
        seen[key] = m.folder


def _base_dir(base_model: str) -> Path:
    """The base model's local directory, with a chat template (the evaluation formats every prompt with it)."""
    from .model import provision

    path = provision(ModelConfig(base_model=base_model), progress=False)
    if not (path / MODEL_CONFIG).is_file():
        raise ConfigError(f"base_model {base_model!r}: no {MODEL_CONFIG} in {path}; give the local directory of a "
                          "Hugging Face causal LM (nothing is loaded from a hub)")
    tok_config = path / "tokenizer_config.json"
    has_template = (path / "chat_template.jinja").is_file() or (
        tok_config.is_file() and json.loads(tok_config.read_text()).get("chat_template"))
    if not has_template:
        raise ConfigError(f"base_model {base_model!r}: its tokenizer has no chat template; the evaluation asks "
                          "every prompt as a chat turn: add chat_template.jinja to the model directory")
    return path


@dataclass(frozen=True)
class BaseShape:
    """What every member is checked against, read once: the base's directory, config and linear layers."""
    directory: Path
    config: dict
    linear: dict[str, tuple[int, int]] = field(repr=False)  # layer → (out, in) features


def _check_member(folder: Path, member: Member, base: BaseShape) -> Checked:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (listed in the family file as {member.folder!r})")
    if (folder / ADAPTER_CONFIG).is_file():
        return _check_adapter(folder, member, base)
    weights = sorted(folder.glob("*.safetensors"))
    if (folder / MODEL_CONFIG).is_file() and weights:
        return _check_full(folder, member, base, weights)
    raise ConfigError(f"{folder}: no weights: expected a PEFT adapter ({ADAPTER_CONFIG} + {ADAPTER_FILE}) or a "
                      f"full checkpoint ({MODEL_CONFIG} + *.safetensors)")


def _check_adapter(folder: Path, member: Member, base: BaseShape) -> Checked:
    weights = folder / ADAPTER_FILE
    if not weights.is_file():
        raise ConfigError(f"{folder}: {ADAPTER_CONFIG} but no {ADAPTER_FILE}; save the adapter with safetensors")
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"{folder}: a {config.get('peft_type')} adapter; only LoRA adapters can be imported")
    _check_lora_shapes(folder, weights, base)
    return Checked(member, folder, "adapter", (folder / ADAPTER_CONFIG, weights), lora_rank=int(config.get("r", 0)),
                   digest=weights_digest([weights]))


def _check_lora_shapes(folder: Path, weights: Path, base: BaseShape) -> None:
    """Every LoRA factor fits the base's layer it adapts (an adapter of another base does not)."""
    from safetensors import safe_open

    linear, base_dir = base.linear, base.directory
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            m = re.match(r"^base_model\.model\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
            if not m:
                continue
            module, factor = m.groups()
            if module not in linear:
                raise ConfigError(f"{folder}: adapts {module}, which the base model {base_dir} does not have; "
                                  "this adapter was trained on another base than the one named")
            out_f, in_f = linear[module]
            shape = tuple(f.get_slice(key).get_shape())
            if (factor == "A" and shape[1] != in_f) or (factor == "B" and shape[0] != out_f):
                raise ConfigError(f"{folder}: {key} has shape {list(shape)}, which does not fit the base's "
                                  f"{module} ({in_f} → {out_f}); this adapter was trained on another base")


def _linear_shapes(base_dir: Path) -> dict[str, tuple[int, int]]:
    """(out, in) features of every linear layer of the base, from its config on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_dir))
    return {name: (mod.out_features, mod.in_features) for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear)}


def _check_full(folder: Path, member: Member, base: BaseShape, weights: list[Path]) -> Checked:
    mine, base_dir = json.loads((folder / MODEL_CONFIG).read_text()), base.directory
    if differ := [k for k in ARCHITECTURE_FIELDS if mine.get(k) != base.config.get(k)]:
        shown = ", ".join(f"{k} {mine.get(k)!r} vs {base.config.get(k)!r}" for k in differ)
        raise ConfigError(f"{folder}: a full checkpoint of another architecture than the base ({shown}); a family's "
                          "checkpoints must all be fine-tunes of the one base_model")
    own = [p for p in folder.iterdir() if p.is_file() and (p.name in TOKENIZER_FILES or p.name == MODEL_CONFIG)]
    # the base's tokenizer (and chat template) where the checkpoint has none: a fine-tune keeps its base's
    borrowed = [base_dir / n for n in TOKENIZER_FILES if (base_dir / n).is_file() and not (folder / n).exists()]
    return Checked(member, folder, "full", tuple(sorted({*weights, *own, *borrowed})), digest=weights_digest(weights))


def _show(knobs: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in knobs.items())


# ---------------------------------------------------------------- writing

def member_ids(checked: list[Checked]) -> list[str]:
    """Our run id per member: 's{λ_safe}-h{λ_helpful}', plus '-{knob}{value}' for each other knob that varies."""
    varying = sorted({k for c in checked for k in c.member.knobs if k not in LAMBDAS
                      and len({x.member.knobs.get(k) for x in checked}) > 1})
    ids = []
    for c in checked:
        k = c.member.knobs
        ids.append(run_id(k["lambda_safe"], k["lambda_helpful"]) + "".join(
            f"-{name}{k[name]:g}" for name in varying if name in k))
    return ids


def import_family(directory: Path, family_file: Path, name: str | None = None, link: bool = False,
                  allow_mixed_ranks: bool = False, root: Path | None = None) -> Path:
    """Check the family, then write <root>/<name>/ whole (root: checkpoints/). Returns its directory."""
    from .model import fingerprint_of, provision

    directory, family_file = Path(directory).resolve(), Path(family_file)
    name = name or directory.name
    if not SAFE_NAME.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (it names a folder)")
    out = sweep_dir(name, root or CHECKPOINTS_ROOT)
    if out.exists():
        raise ConfigError(f"{out} exists already; pick another --name, or delete it to import again")
    spec = read_family_file(family_file)
    checked = check_family(directory, spec, allow_mixed_ranks)
    ids = member_ids(checked)
    axes = {k: sorted({c.member.knobs[k] for c in checked}) for k in LAMBDAS}
    base_fp = fingerprint_of(provision(ModelConfig(base_model=spec.base_model), progress=False))
    with atomic_directory(out) as tmp:
        for c, rid in zip(checked, ids):
            manifest = _manifest(c, rid, spec, name, axes, family_file, link, base_fp)
            _write_member(tmp / rid, c, manifest, link)
    return out


def _manifest(c: Checked, rid: str, spec: FamilySpec, name: str, axes: dict, family_file: Path, link: bool,
              base_fingerprint: str) -> dict:
    knobs = c.member.knobs
    return {"run_id": rid, "lambda_safe": knobs["lambda_safe"], "lambda_helpful": knobs["lambda_helpful"],
            "knobs": knobs, "weights": c.weights, "lora_rank": c.lora_rank, "adapter_sha256": c.digest,
            "base_model": spec.base_model,
            "base_fingerprint": base_fingerprint,
            "recipe": {"model": {"base_model": spec.base_model}, "sweep": {"name": name, **axes}},
            "imported": {"source": str(c.source), "family_file": str(family_file.resolve()),
                         "files": "linked" if link else "copied", "target_violation": spec.target_violation,
                         "code_version": code_version()}}


def _write_member(dest: Path, c: Checked, manifest: dict, link: bool) -> None:
    dest.mkdir(parents=True)
    for f in c.files:
        if link:
            (dest / f.name).symlink_to(f.resolve())
        else:
            shutil.copy2(f, dest / f.name)
    (dest / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    (dest / CARD_FILE).write_text(imported_card(manifest))


def imported_card(m: dict) -> str:
    what = "LoRA adapter" if m["weights"] == "adapter" else "Full fine-tune"
    return (f"# {m['run_id']}\n\n{what} of {m['base_model']} (base fingerprint `{m['base_fingerprint']}`), trained "
            f"elsewhere and imported from `{m['imported']['source']}` ({m['imported']['files']}).\n\n"
            f"Knobs: {_show(m['knobs'])}.\n")
