"""Bring your own family (explorer/family.py): checkpoints trained elsewhere (plain PEFT adapters and a full
fine-tune of the tiny test model) imported with their knob values, evaluated, reported and shown; and every
bad input refused with one line, exit 2, nothing written."""
import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from explorer.__main__ import main
from explorer.checkpoints import MANIFEST_FILE

from conftest import cli_refuses

KNOBS = {"run-a": {"lambda_safe": 0, "lambda_helpful": 0.1, "beta": 0.1},
         "run-b": {"lambda_safe": 1, "lambda_helpful": 0.1, "beta": 0.1},
         "run-c": {"lambda_safe": 1, "lambda_helpful": 0.1, "beta": 0.5},
         "full-1": {"lambda_safe": 2, "lambda_helpful": 0, "beta": 0.1}}


def save_adapter(base_dir: Path, out: Path, seed: int, r: int = 4) -> Path:
    """A LoRA adapter as any PEFT-based trainer saves it (random B, so it changes the answers)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    return out


def save_full(base_dir: Path, out: Path, seed: int, **config_changes) -> Path:
    """A full fine-tune: every weight moved a little, saved with its config and no tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    if config_changes:  # another architecture
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_dir, **config_changes))
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)
    return out


def write_family(path: Path, base: Path, knobs: dict, **extra) -> Path:
    path.write_text(yaml.safe_dump({"base_model": str(base), "checkpoints": knobs, **extra}))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def external(tiny_dir, tmp_path_factory):
    """A family trained 'elsewhere': three adapters and one full fine-tune of the tiny model."""
    d = tmp_path_factory.mktemp("external") / "team-sweep"
    for seed, name in enumerate(("run-a", "run-b", "run-c")):
        save_adapter(tiny_dir, d / name, seed)
    save_full(tiny_dir, d / "full-1", 7)
    return d


def test_an_external_family_is_imported_evaluated_reported_and_shown(external, tiny_dir, tmp_path, monkeypatch, capsys):
    from streamlit.testing.v1 import AppTest

    before = tree_digest(external)
    family = write_family(tmp_path / "family.yaml", tiny_dir, KNOBS, target_violation=0.1)
    root = tmp_path / "checkpoints"
    monkeypatch.setattr("explorer.checkpoints.CHECKPOINTS_ROOT", root)
    monkeypatch.setattr("explorer.family.CHECKPOINTS_ROOT", root)
    assert main(["import-family", str(external), "--family", str(family), "--name", "team"]) == 0
    out = root / "team"
    ids = sorted(p.name for p in out.iterdir())
    assert ids == ["s0-h0.1-beta0.1", "s1-h0.1-beta0.1", "s1-h0.1-beta0.5", "s2-h0-beta0.1"]  # beta varies: named
    full = json.loads((out / "s2-h0-beta0.1" / MANIFEST_FILE).read_text())
    assert full["weights"] == "full" and full["knobs"] == KNOBS["full-1"] and full["imported"]["target_violation"] == 0.1
    assert (out / "s2-h0-beta0.1" / "chat_template.jinja").is_file()  # the base's, as the checkpoint had none
    assert tree_digest(external) == before  # the team's files are never modified

    db = tmp_path / "team.duckdb"
    assert main(["eval", "--checkpoints", str(out), "--db", str(db), "--judge", "keyword", "--limit", "1",
                 "--set", "eval.max_new_tokens=6", "--set", "eval.splits=[test]"]) == 0
    capsys.readouterr()
    assert main(["report", "--json", "--db", str(db)]) == 0
    rep = json.loads(capsys.readouterr().out)
    rows = {c["id"]: c for c in rep["checkpoints"]}
    assert set(rows) == {"base", *ids} and rep["evaluation"]["sweep"] == "team"
    assert rows["s1-h0.1-beta0.5"]["knobs"] == KNOBS["run-c"] and "knobs" not in rows["base"]
    assert all(rows[i]["capability_nll"] is not None for i in ids)  # the full fine-tune scored on its own engine
    assert len({rows[i]["capability_nll"] for i in ids}) == len(ids)  # each checkpoint answered as itself

    monkeypatch.setenv("EXPLORER_DB", str(db))
    monkeypatch.setenv("EXPLORER_REVIEWS_DB", str(tmp_path / "reviews.duckdb"))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(out))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    shown = next(df.value for df in at.dataframe if "beta" in df.value.columns)
    assert dict(zip(shown["checkpoint"], shown["beta"])) == {i: KNOBS[f]["beta"] for i, f in zip(
        ids, ("run-a", "run-b", "run-c", "full-1"))}


def test_linked_weights_point_at_the_teams_files(external, tiny_dir, tmp_path):
    from explorer.family import import_family

    family = write_family(tmp_path / "f.yaml", tiny_dir, {k: KNOBS[k] for k in ("run-a", "run-b")})
    out = import_family(external, family, name="linked", link=True, root=tmp_path)
    weights = out / "s0-h0.1" / "adapter_model.safetensors"  # beta is the same on both: not in the names
    assert weights.is_symlink() and weights.resolve() == (external / "run-a" / "adapter_model.safetensors").resolve()


def test_a_csv_family_file_reads_like_the_yaml_one(tiny_dir, tmp_path):
    from explorer.family import read_family_file

    csv_file = tmp_path / "f.csv"
    csv_file.write_text(f"folder,lambda_safe,lambda_helpful,beta,base_model\nrun-a,0,0.1,0.1,{tiny_dir}\n"
                        f"run-b,1,0.1,0.1,{tiny_dir}\n")
    from_csv = read_family_file(csv_file)
    from_yaml = read_family_file(write_family(tmp_path / "f.yaml", tiny_dir, {k: KNOBS[k] for k in ("run-a", "run-b")}))
    assert from_csv == from_yaml


def _bad_cases(tiny_dir: Path, external: Path, tmp: Path) -> dict:
    """name → (the DIR to import, the family file's checkpoints, the words the error must have)."""
    other = tmp / "other-base"
    if not other.exists():
        save_full(tiny_dir, other, 0, hidden_size=48, intermediate_size=96)
        for n in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            (other / n).write_bytes((tiny_dir / n).read_bytes())
        save_adapter(other, tmp / "odd" / "wrong-base", 1)
        save_adapter(tiny_dir, tmp / "odd" / "rank-8", 2, r=8)
        save_full(tiny_dir, tmp / "odd" / "other-arch", 3, num_hidden_layers=3)
        (tmp / "odd" / "empty").mkdir()
        for name in ("run-a",):
            save_adapter(tiny_dir, tmp / "odd" / name, 0)
    a = {"lambda_safe": 0, "lambda_helpful": 0}
    return {
        "no weights": (tmp / "odd", {"empty": a}, "no weights"),
        "other base": (tmp / "odd", {"wrong-base": a}, "trained on another base"),
        "mixed ranks": (tmp / "odd", {"run-a": a, "rank-8": {**a, "lambda_safe": 1}}, "mixed LoRA rank"),
        "not a number": (external, {"run-a": {**a, "lambda_safe": "high"}}, "is not a number"),
        "same knobs": (external, {"run-a": a, "run-b": a}, "same knob values"),
        "missing folder": (external, {"run-z": a}, "no such folder"),
        "other architecture": (tmp / "odd", {"other-arch": a}, "another architecture"),
        "no lambdas": (external, {"run-a": {"beta": 1}}, "needs both λs"),
    }


@pytest.mark.parametrize("case", ["no weights", "other base", "mixed ranks", "not a number", "same knobs",
                                  "missing folder", "other architecture", "no lambdas"])
def test_bad_families_are_refused_with_nothing_written(case, external, tiny_dir, tmp_path_factory, tmp_path, capsys,
                                                        monkeypatch):
    shared = tmp_path_factory.getbasetemp() / "bad-families"
    shared.mkdir(exist_ok=True)
    directory, knobs, needle = _bad_cases(tiny_dir, external, shared)[case]
    capsys.readouterr()  # what building the bad checkpoints printed
    root = tmp_path / "checkpoints"
    monkeypatch.setattr("explorer.family.CHECKPOINTS_ROOT", root)
    family = write_family(tmp_path / "family.yaml", tiny_dir, knobs)
    assert needle in cli_refuses(capsys, "import-family", directory, "--family", family, "--name", "bad")
    assert not root.exists() or not any(root.iterdir())  # nothing written, not even a temp folder


def test_a_base_without_a_chat_template_and_a_missing_directory_are_named(external, tiny_dir, tmp_path, capsys):
    plain = tmp_path / "plain-base"
    plain.mkdir()
    for n in ("config.json", "model.safetensors", "tokenizer.json"):
        (plain / n).write_bytes((tiny_dir / n).read_bytes())
    (plain / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    family = write_family(tmp_path / "f.yaml", plain, {"run-a": KNOBS["run-a"]})
    assert "no chat template" in cli_refuses(capsys, "import-family", external, "--family", family, "--name", "x")
    assert "no such directory" in cli_refuses(capsys, "import-family", tmp_path / "nowhere", "--family", family)
    assert "family file not found" in cli_refuses(capsys, "import-family", external, "--family", tmp_path / "no.yaml")
