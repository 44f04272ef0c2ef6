"""Concurrency and security: sessions generating at once never mix adapters; the dashboard keeps
reading while an evaluation writes; only safetensors are loaded; the app binds to localhost."""
import dataclasses
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from explorer import store
from explorer.checkpoints import BASE_ID
from explorer.generate import generate_one
from explorer.model import load_base

from tiny import make_tiny_model, tiny_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def multi_adapter_base(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    base = load_base(tiny_recipe(make_tiny_model(tmp_path_factory.mktemp("tiny"))).model, progress=False)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(base.model, cfg, adapter_name="a")
    for name in ("b", "c"):
        model.add_adapter(name, cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # make each adapter really change the output
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.eval()
    return dataclasses.replace(base, model=model)


def test_concurrent_sessions_never_mix_adapters(multi_adapter_base):
    b = multi_adapter_base
    prompt = "Tell me about the weather in Paris."
    solo = {ck: generate_one(b, ck, prompt, 12) for ck in (BASE_ID, "a", "b", "c")}
    assert len(set(solo.values())) == 4, "adapters must produce distinct outputs for this test to mean anything"
    results, errors = [], []

    def session(ck):
        try:
            for _ in range(3):
                results.append((ck, generate_one(b, ck, prompt, 12)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=session, args=(ck,)) for ck in (BASE_ID, "a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: a session never finished"
    assert not errors
    assert len(results) == 12 and all(out == solo[ck] for ck, out in results)


def test_fast_adapter_switch_equals_peft_switching(multi_adapter_base):
    """generate.activate sets only the flags LoRA layers read in forward(); the logits must equal those
    after PEFT's own set_adapter / disable_adapter, for every adapter and in any order."""
    from explorer.generate import activate, encode_chat

    b = multi_adapter_base
    enc = encode_chat(b, ["Tell me about the weather in Paris."], None, 8)

    def logits():
        with torch.inference_mode():
            return b.model(**enc).logits

    for ck in ("b", BASE_ID, "a", "c", "a"):
        activate(b.model, ck)
        fast = logits()
        if ck == BASE_ID:
            with b.model.disable_adapter():
                reference = logits()
        else:
            b.model.base_model.enable_adapter_layers()
            b.model.set_adapter(ck)
            reference = logits()
        torch.testing.assert_close(fast, reference, rtol=0, atol=0)
    activate(b.model, "a")
    a_out = logits()
    activate(b.model, "c")
    assert not torch.equal(a_out, logits()), "switching must change the output for this test to mean anything"


def test_dashboard_reads_while_evaluation_writes(tmp_path):
    from explorer import queries

    db, reviews = tmp_path / "eval.duckdb", tmp_path / "reviews.duckdb"
    store.ensure("eval", db)
    store.ensure("reviews", reviews)
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import pandas as pd, time
from explorer import store
from pathlib import Path
for i in range(40):
    with store.writer('eval', Path({str(db)!r})) as con:
        con.register('new_metrics', pd.DataFrame([dict(judge='j', judge_version='v', dataset='d' + str(i), n_labels=i,
                     agreement=0.5, kappa=0.1, confusion='{{}}')]))
        con.execute(store.sql('insert_judge_metrics'))
        time.sleep(0.02)
print('done', flush=True)
"""], stdout=subprocess.PIPE, text=True)
    seen, t0 = [], time.monotonic()
    while writer.poll() is None and time.monotonic() - t0 < 60:
        seen.append(len(queries.judge_metrics(db, reviews)))
    assert writer.wait(timeout=60) == 0
    assert all(b >= a for a, b in zip(seen, seen[1:]))  # only ever whole commits, growing
    assert any(0 < n < 40 for n in seen), "no read landed between the writer's commits"
    assert len(queries.judge_metrics(db, reviews)) == 40  # everything shows once committed


WRITER = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
import pandas as pd
from conftest import REFUSAL, DisagreeingJudge, prompt_table, refuses
from explorer import store
from explorer.checkpoints import CheckpointInfo
from explorer.config import DEFAULT_RECIPE, load_recipe
from explorer.evaluate import gen_key, judge_rows, register
from explorer.judges import KeywordJudge

db, prompts = Path({db!r}), prompt_table()
info = CheckpointInfo("s2-h0", Path("/nowhere/s2-h0"), "fp-s2-h0", 2.0, 0.0,
                      {{"base_fingerprint": "fp", "lambda_safe": 2.0, "lambda_helpful": 0.0}})
recipe = load_recipe(DEFAULT_RECIPE)
register([info], prompts, recipe, db)
responses = []
for kind, g in prompts.groupby("kind", sort=False):
    responses += [REFUSAL if refuses(kind, i, 2.0, 0.0, False) else "Sure: " + t for i, t in enumerate(g["text"])]
rows = pd.DataFrame({{"checkpoint_fp": info.fingerprint, "checkpoint_id": info.id, "prompt_id": prompts["id"],
                     "gen_key": gen_key(recipe), "response": responses, "n_tokens": 12, "seconds": 0.1}})
for start in range(0, len(rows), 5):  # one transaction per batch, as `explorer eval` commits
    batch = rows.iloc[start:start + 5]
    with store.writer("eval", db) as con:
        con.register("new_generations", batch)
        con.execute(store.sql("insert_generations"))
        con.register("new_judgments", judge_rows(batch, prompts["text"].iloc[start:start + 5].tolist(),
                                                 [KeywordJudge(), DisagreeingJudge()]))
        con.execute(store.sql("insert_judgments"))
        time.sleep(0.1)  # hold the write lock a while, as a real batch does
    time.sleep(0.2)
"""


def test_dashboard_keeps_serving_while_an_evaluation_writes(app_env, eval_db, tmp_path, monkeypatch):
    """The trade-off map reruns again and again while another process commits a new checkpoint's results
    batch by batch: no rerun fails, the half-evaluated checkpoint never shows, and once its last batch
    commits the next rerun shows it (no restart, no cache clearing)."""
    import shutil

    from streamlit.testing.v1 import AppTest

    db = tmp_path / "eval.duckdb"
    shutil.copy(eval_db, db)
    monkeypatch.setenv("EXPLORER_DB", str(db))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception

    def shown() -> list[str]:
        return sorted(at.dataframe[0].value["checkpoint_id"])

    before = shown()
    assert "s2-h0" not in before
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"),
                                                                   db=str(db))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while writer.poll() is None:
        at.run()
        assert not at.exception, at.exception
        seen.append(shown())
    assert writer.returncode == 0, writer.stderr.read()
    at.run()
    assert shown() == sorted(before + ["s2-h0"])
    assert seen, "the dashboard must have rerun while the writer was committing"
    # every rerun showed either the old set or, after the last commit, the complete new one
    assert all(s in (before, shown()) for s in seen)
    assert seen[0] == before


def test_only_safetensors_are_loaded():
    for f in list((ROOT / "explorer").rglob("*.py")) + [ROOT / "app.py"]:
        src = f.read_text()
        assert "import pickle" not in src and "joblib" not in src, f
        for call in re.findall(r"torch\.load\([^)]*\)", src):
            assert "weights_only=True" in call, f"{f}: {call}"
        assert "use_safetensors=False" not in src and "safe_serialization=False" not in src, f


def test_app_listens_on_localhost_by_default():
    cfg = (ROOT / ".streamlit" / "config.toml").read_text()
    assert re.search(r'^address\s*=\s*"localhost"', cfg, re.M)
    from explorer.__main__ import build_parser

    assert build_parser().parse_args(["app"]).address == "localhost"
