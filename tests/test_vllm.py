"""The vLLM evaluation engine (explorer/vllm_engine.py) against the HF engine: an imported family (two adapters
and a full fine-tune of a tiny model) evaluated by both, greedy, in float32: the same answers, stored under
an evaluation of its own. vLLM runs in its own environment (`make vllm`); CI installs it."""
from pathlib import Path

import duckdb
import pytest
import yaml

from explorer.__main__ import main
from explorer.vllm_engine import VLLM_PYTHON_ENV, VLLM_VENV, served_rank

from optional import require
from test_family import save_adapter, save_full
from tiny import make_tiny_model


def _vllm_available() -> bool:
    import os

    path = Path(os.environ.get(VLLM_PYTHON_ENV) or VLLM_VENV / "bin" / "python")
    return path.is_file()


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """An imported family of a tiny model vLLM's CPU kernels take (head dimension 64)."""
    require(_vllm_available(), "the vLLM environment", "make vllm")
    work = tmp_path_factory.mktemp("vllm")
    base = make_tiny_model(work / "base", head_dim=64)
    runs = work / "runs"
    save_adapter(base, runs / "a", 1)
    save_adapter(base, runs / "b", 2)
    save_full(base, runs / "full", 3)
    (work / "family.yaml").write_text(yaml.safe_dump({"base_model": str(base), "checkpoints": {
        "a": {"lambda_safe": 0, "lambda_helpful": 0}, "b": {"lambda_safe": 1, "lambda_helpful": 0},
        "full": {"lambda_safe": 2, "lambda_helpful": 0}}}))
    from explorer.family import import_family

    return import_family(runs, work / "family.yaml", name="tiny-vllm", root=work / "checkpoints"), work


def _answers(db: Path) -> tuple[dict, set]:
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select checkpoint_id, prompt_id, response, gen_key from generations").fetchall()
    con.close()
    return {(c, p): r for c, p, r, _ in rows}, {k for *_, k in rows}


def test_vllm_gives_the_hf_engines_greedy_answers(family, capsys):
    sweep, work = family
    common = ["eval", "--checkpoints", str(sweep), "--judge", "keyword", "--limit", "2", "--set", "eval.splits=[test]",
              "--set", "eval.max_new_tokens=8", "--set", "model.dtype=float32"]
    assert main([*common, "--db", str(work / "hf.duckdb")]) == 0
    assert main([*common, "--db", str(work / "vllm.duckdb"), "--set", "eval.engine=vllm"]) == 0
    hf, hf_keys = _answers(work / "hf.duckdb")
    vllm, vllm_keys = _answers(work / "vllm.duckdb")
    assert set(vllm) == set(hf) and {c for c, _ in hf} == {"base", "s0-h0", "s1-h0", "s2-h0"}
    same = sum(hf[k] == vllm[k] for k in hf) / len(hf)
    assert same >= 0.95, f"only {same:.0%} of the answers agree"
    assert hf_keys.isdisjoint(vllm_keys)  # the engine is part of the generation settings: two evaluations
    # each checkpoint answered as itself, not as the adapter of the batch (the zero adapter stands for the base)
    by_checkpoint = {c: tuple(v for (cc, _), v in sorted(vllm.items()) if cc == c) for c in ("base", "s0-h0", "s1-h0")}
    assert len(set(by_checkpoint.values())) == 3


def test_a_missing_vllm_environment_is_named(tmp_path, monkeypatch, capsys):
    from conftest import cli_refuses

    monkeypatch.setenv(VLLM_PYTHON_ENV, str(tmp_path / "no-python"))
    assert "make vllm" in cli_refuses(capsys, "eval", "--set", "eval.engine=vllm", "--only", "base")


def test_served_ranks_are_the_powers_of_two_vllm_takes():
    assert [served_rank(r) for r in (1, 4, 8, 9, 16, 17, 64)] == [8, 8, 8, 16, 16, 32, 64]
