"""Checkpoints on disk: their names, files, provenance, validation and discovery.

A checkpoint is the base model (id BASE_ID, adapters off) or a finished run: a directory
checkpoints/<sweep>/<run id>/ holding the PEFT adapter (fp16 safetensors), manifest.json (λs,
resolved recipe, data and base fingerprints, code version, loss history) and README.md (model
card). A run is finished when manifest.json exists: the directory is built in a temp sibling and
renamed whole (atomic.py), so nothing half-written is ever loadable. Every module that names, writes
or reads a checkpoint goes through here.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_directory
from .config import ROOT, VARIANTS, ConfigError, ModelConfig

CHECKPOINTS_ROOT = ROOT / "checkpoints"
BASE_ID = "base"  # the untrained reference checkpoint: adapters disabled
ADAPTER_FILE = "adapter_model.safetensors"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"  # the model card


def run_id(lambda_safe: float, lambda_helpful: float, variant: str = "") -> str:
    """The directory name of a grid point: 's1-h0.3' for λ_safe = 1, λ_helpful = 0.3; a variant's
    point carries its name ('s1-h0.3-hinge')."""
    return f"s{lambda_safe:g}-h{lambda_helpful:g}" + (f"-{variant}" if variant else "")


def constrained_id(target_violation: float, lambda_helpful: float) -> str:
    """The run trained to ε by dual ascent (`sweep --target-violation ε`): 'constrained-eps0.3-h0.1'."""
    return f"constrained-eps{target_violation:g}-h{lambda_helpful:g}"


def bisection_id(target_violation: float, lambda_helpful: float) -> str:
    """The run found for ε by bisection across runs (`sweep --target-violation ε --bisect`): 'bisect-eps0.3-h0.1'."""
    return f"bisect-eps{target_violation:g}-h{lambda_helpful:g}"


# interpolated: a blend of trained grid points at a slider position between them; fidelity: a blend at a
# trained point with that point's row withheld, compared with the model trained there (never on the map)
KINDS = ("base", "grid", "constrained", "variant", "interpolated", "fidelity")
# how a constrained run found its λ_safe: `sweep --target-violation ε` (dual ascent inside one run) or with
# --bisect (bisection on λ_safe across runs)
CONSTRAINT_METHODS = ("dual ascent", "bisection")


def variant_of(loss: dict) -> str:
    """The variants (config.VARIANTS) a loss section carries ('' for the main grid's loss), joined by '+'."""
    return "+".join(name for name, change in VARIANTS.items() if all(loss.get(k) == v for k, v in change.items()))


def describe(manifest: dict, is_base: bool) -> dict:
    """kind (KINDS), the ε a constrained run was trained to and how (CONSTRAINT_METHODS), the variant name,
    an imported checkpoint's knob values,
    how a blended model was blended (interpolate.METHODS), and whether a grid run lies on its sweep's axes
    (on_grid: a corner for interpolation; a run trained off them, e.g. a bisection probe, is not)."""
    recipe = manifest.get("recipe") or {}
    sweep = recipe.get("sweep") or {}
    eps = sweep.get("target_violation")
    variant = variant_of(recipe.get("loss") or {})
    blend = manifest.get("interpolated")
    kind = ("base" if is_base else ("fidelity" if blend.get("held_out") else "interpolated") if blend
            else "constrained" if eps is not None else "variant" if variant else "grid")
    return {"kind": kind, "target_violation": eps, "variant": variant or None,
            "knobs": manifest.get("knobs"),  # an imported family's swept knobs (family.py); None for ours
            "blend_method": blend["method"] if blend else None,
            "constraint_method": ("bisection" if "bisection" in manifest else "dual ascent") if kind == "constrained" else None,
            "on_grid": kind == "grid" and _on_axes(manifest, sweep)}


def _on_axes(manifest: dict, sweep: dict) -> bool:
    """The run's λs are values of its sweep's two axes (a manifest without them counts as on them)."""
    def on(value, axis) -> bool:
        return axis is None or any(math.isclose(float(value), float(a), abs_tol=1e-9) for a in axis)

    return (on(manifest.get("lambda_safe", 0.0), sweep.get("lambda_safe"))
            and on(manifest.get("lambda_helpful", 0.0), sweep.get("lambda_helpful")))


def sweep_dir(sweep_name: str, root: Path = CHECKPOINTS_ROOT) -> Path:
    return Path(root) / sweep_name


@dataclass(frozen=True)
class CheckpointInfo:
    id: str
    directory: Path | None  # None for the base model and for interpolated models (blended in memory)
    fingerprint: str  # first 16 hex digits of the adapter digest; 'base-<base fingerprint>' for the base
    lambda_safe: float
    lambda_helpful: float
    manifest: dict

    @property
    def is_base(self) -> bool:
        return self.id == BASE_ID

    @property
    def is_full(self) -> bool:
        """A full fine-tune (imported): its own model, not an adapter on the shared base."""
        return self.manifest.get("weights") == "full"


# ---------------------------------------------------------------- provenance

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


def adapter_digest(path: Path) -> str:
    """sha256 over tensor names, dtypes and bytes, in sorted order. Not the file's hash: safetensors
    writes its header metadata in hash-map order, so identical weights can give different files."""
    return weights_digest([path])


def weights_digest(paths: list[Path]) -> str:
    """adapter_digest over several safetensors files (a sharded full checkpoint), one tensor at a time, so a
    checkpoint of several GB is never in memory whole."""
    import torch
    from safetensors import safe_open

    h = hashlib.sha256()
    handles = [safe_open(str(p), framework="pt") for p in paths]
    for name, f in sorted((name, f) for f in handles for name in f.keys()):
        tensor = f.get_tensor(name)
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- writing

def save_checkpoint(peft_model, manifest: dict, out_dir: Path) -> dict:
    """Adapter (fp16 safetensors) + manifest + model card into a temp dir, then one rename.
    Returns the manifest as written (with the adapter digest)."""
    import torch
    from safetensors.torch import load_file, save_file

    with atomic_directory(out_dir) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        weights = load_file(str(tmp / ADAPTER_FILE))
        # fp16 storage halves the adapter; it is upcast to the model's dtype on load
        save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(tmp / ADAPTER_FILE),
                  metadata={"format": "pt", "base_fingerprint": manifest["base_fingerprint"]})
        manifest = {**manifest, "adapter_sha256": adapter_digest(tmp / ADAPTER_FILE)}
        _write_manifest(tmp, manifest)
    return manifest


def save_copy(src: Path, manifest: dict, out_dir: Path) -> dict:
    """A finished run's adapter as another checkpoint: its weights and PEFT's other files copied as they are
    (the same digest, so the two share their evaluation), with `manifest` and its model card; one rename."""
    with atomic_directory(out_dir) as tmp:
        for f in Path(src).iterdir():  # the weights, PEFT's adapter_config.json and anything else it saved
            if f.name not in (MANIFEST_FILE, CARD_FILE) and f.is_file():
                shutil.copy2(f, tmp / f.name)
        _write_manifest(tmp, manifest)
    return manifest


def _write_manifest(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    (directory / CARD_FILE).write_text(model_card(manifest))


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


# ---------------------------------------------------------------- reading

def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / MANIFEST_FILE).read_text())


def is_finished(run_dir: Path, pairs_fingerprint: str | None = None) -> bool:
    """A manifest exists (and, if given, the run was trained on these pairs)."""
    m = Path(run_dir) / MANIFEST_FILE
    if not m.is_file():
        return False
    return pairs_fingerprint is None or json.loads(m.read_text()).get("pairs_fingerprint") == pairs_fingerprint


def clean_partial(directory: Path) -> list[Path]:
    """Remove temp dirs left by a killed run (they were never renamed, so nothing loads them)."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp-*"):  # see atomic.py
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def weight_files(directory: Path, manifest: dict) -> list[Path]:
    """The safetensors files a checkpoint's digest covers: its adapter, or a full checkpoint's shards."""
    if manifest.get("weights") == "full":
        return sorted(Path(directory).glob("*.safetensors"))
    return [Path(directory) / ADAPTER_FILE]


def validate_adapter(directory: Path, base_fingerprint: str) -> dict:
    """Check a checkpoint directory (an adapter, or an imported full checkpoint) before anything loads it;
    return its manifest."""
    mpath = directory / MANIFEST_FILE
    if not mpath.is_file():
        raise ConfigError(f"{directory}: no {MANIFEST_FILE} (an unfinished run?); rerun the sweep to complete it")
    manifest = json.loads(mpath.read_text())
    files = weight_files(directory, manifest)
    if manifest.get("weights") != "full" and not files[0].is_file():
        raise ConfigError(f"{directory}: adapter file {ADAPTER_FILE} is missing; rerun the sweep for this point")
    if not files or not all(f.is_file() for f in files):
        raise ConfigError(f"{directory}: weights missing (*.safetensors); import the family again")
    if manifest.get("base_fingerprint") != base_fingerprint:
        raise ConfigError(f"{directory}: adapter was trained on base {manifest.get('base_fingerprint')!r}, but the "
                          f"loaded base is {base_fingerprint!r}; use the matching base model or retrain")
    _check_readable(files)
    if manifest.get("adapter_sha256") and manifest["adapter_sha256"] != weights_digest(files):
        raise ConfigError(f"{files[0]}: content does not match the manifest's sha256 (corrupt or altered); retrain it")
    return manifest


def _check_readable(files: list[Path]) -> None:
    from safetensors import safe_open

    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                list(f.keys())
        except Exception as e:  # safetensors raises several types for truncated/corrupt headers
            raise ConfigError(f"{path}: corrupt or truncated safetensors ({e}); delete the run directory and rerun "
                              "the sweep") from None


def manifests(sweep_root: Path) -> dict[str, dict]:
    """run id → manifest of every finished run under sweep_root, read without checking the weights
    (cheap: for listings; anything that loads an adapter goes through finished_runs)."""
    out = {}
    for m in sorted(Path(sweep_root).glob(f"*/{MANIFEST_FILE}")):
        try:
            out[m.parent.name] = json.loads(m.read_text())
        except ValueError:
            continue  # unreadable: finished_runs reports it when the run is loaded
    return out


def finished_runs(sweep_root: Path, base_fingerprint: str) -> list[tuple[Path, dict]]:
    """(directory, manifest) of every finished run under sweep_root, each checked by validate_adapter."""
    return [(d.parent, validate_adapter(d.parent, base_fingerprint))
            for d in sorted(Path(sweep_root).glob(f"*/{MANIFEST_FILE}"))]


def base_info(base_name: str, base_fingerprint: str) -> CheckpointInfo:
    return CheckpointInfo(BASE_ID, None, f"base-{base_fingerprint}", 0.0, 0.0,
                          {"base_model": base_name, "base_fingerprint": base_fingerprint})


def trained_lambda_safe(manifest: dict) -> float:
    """The λ_safe a run stands for: the one it was trained at, or for a run trained to ε the one its dual
    ascent ended at (the multiplier it found), not the one it started from."""
    return float(manifest["final_lambda_safe"] if manifest.get("lambda_trajectory") else manifest["lambda_safe"])


def run_info(directory: Path, manifest: dict) -> CheckpointInfo:
    """A finished run, named by its directory, fingerprinted by its adapter's digest."""
    return CheckpointInfo(directory.name, directory, manifest["adapter_sha256"][:16], trained_lambda_safe(manifest),
                          float(manifest["lambda_helpful"]), manifest)


def discover(sweep_root: Path, base) -> list[CheckpointInfo]:
    """The base model plus every finished run under sweep_root (a sweep directory)."""
    return [base_info(base.name, base.fingerprint), *(run_info(d, m) for d, m in finished_runs(sweep_root, base.fingerprint))]


def imported_base(sweep_root: Path) -> str | None:
    """The base model an imported family (family.py) names, None for a sweep trained here."""
    for m in manifests(sweep_root).values():
        if m.get("imported"):
            return m["base_model"]
    return None


def model_config(sweep_root: Path) -> ModelConfig:
    """The base-model settings the sweep's adapters were trained with (from their manifests), so the
    live view loads the base they belong to whatever recipe file is on disk; defaults when none."""
    from dataclasses import fields

    for m in manifests(sweep_root).values():
        section = (m.get("recipe") or {}).get("model")
        if section:
            known = {f.name for f in fields(ModelConfig)}
            return ModelConfig(**{k: v for k, v in section.items() if k in known})
    return ModelConfig()
