"""Concurrency and security: sessions generating at once never mix adapters; the dashboard keeps
reading while an evaluation writes; only safetensors are loaded; the app binds to localhost."""
import dataclasses
import re
import subprocess
import sys
import threading
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


class Lockstep:
    """A writer process that commits one transaction each time it is told to go, then says so: the test
    decides where every read falls relative to the commits, so what it asserts never depends on how the
    two processes happen to be scheduled."""

    def __init__(self, script: str, *args, log: Path):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log.open("w"), text=True)

    def expect(self, line: str) -> None:
        got = self.proc.stdout.readline().strip()
        assert got == line, f"writer said {got!r}, not {line!r}:\n{self.log.read_text()[-3000:]}"

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0, self.log.read_text()[-3000:]


METRICS_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import pandas as pd
from pathlib import Path
from explorer import store
print("ready", flush=True)
for i in range(int(sys.argv[3])):
    sys.stdin.readline()  # go
    with store.writer("eval", Path(sys.argv[2])) as con:  # two rows per commit, the lock held between them
        for half in ("a", "b"):
            con.register("new_metrics", pd.DataFrame([dict(judge="j", judge_version="v", dataset=f"d{i}{half}",
                         n_labels=i, agreement=0.5, kappa=0.1, confusion="{}")]))
            con.execute(store.sql("insert_judge_metrics"))
            time.sleep(0.02)
    print(f"committed {i}", flush=True)
"""


def test_dashboard_reads_while_evaluation_writes(tmp_path):
    """A reader between two commits of another process sees every commit so far and nothing more; a read
    started while a transaction may be open sees it whole or not at all."""
    from explorer import queries

    db, reviews = tmp_path / "eval.duckdb", tmp_path / "reviews.duckdb"
    store.ensure("eval", db)
    store.ensure("reviews", reviews)
    commits = 8
    writer = Lockstep(METRICS_WRITER, ROOT, db, commits, log=tmp_path / "writer.log")
    writer.expect("ready")
    for i in range(commits):
        assert len(queries.judge_metrics(db, reviews)) == 2 * i  # between commits: all of them so far
        writer.go()
        assert len(queries.judge_metrics(db, reviews)) in (2 * i, 2 * i + 2)  # during one: whole or nothing
        writer.expect(f"committed {i}")
        assert len(queries.judge_metrics(db, reviews)) == 2 * i + 2  # once committed: shown
    writer.finish()


CHECKPOINT_WRITER = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from pathlib import Path
from bench.synthetic_store import write_answers
from conftest import DisagreeingJudge, canned_responses, prompt_table
from explorer import store
from explorer.checkpoints import CheckpointInfo
from explorer.config import DEFAULT_RECIPE, load_recipe
from explorer.evaluate import gen_key, register
from explorer.judges import KeywordJudge

db, prompts, batch = Path(sys.argv[2]), prompt_table(), int(sys.argv[3])
info = CheckpointInfo("s2-h0", Path("/nowhere/s2-h0"), "fp-s2-h0", 2.0, 0.0,
                      {"base_fingerprint": "fp", "lambda_safe": 2.0, "lambda_helpful": 0.0})
recipe = load_recipe(DEFAULT_RECIPE)
register([info], prompts, recipe, db)  # registered before anything is generated, as `explorer eval` does
print("registered", flush=True)
responses = canned_responses(prompts, 2.0, 0.0)
for start in range(0, len(prompts), batch):  # one transaction per batch, as `explorer eval` commits
    sys.stdin.readline()  # go
    with store.writer("eval", db) as con:
        write_answers(con, info, prompts.iloc[start:start + batch], responses[start:start + batch],
                      gen_key(recipe), [KeywordJudge(), DisagreeingJudge()])
    print(f"committed {start // batch}", flush=True)
"""


def test_dashboard_keeps_serving_while_an_evaluation_writes(app_env, store_copy, tmp_path, monkeypatch):
    """The trade-off map reruns between and during the commits of another process that evaluates a new
    checkpoint batch by batch: no rerun fails, the registered but half-evaluated checkpoint never shows,
    and the rerun after its last batch commits shows it (no restart, no cache clearing)."""
    from conftest import prompt_table
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EXPLORER_DB", str(store_copy))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()

    def shown() -> list[str]:
        at.run()
        assert not at.exception, at.exception
        return sorted(at.dataframe[0].value["checkpoint_id"])

    before = shown()
    after = sorted(before + ["s2-h0"])
    assert "s2-h0" not in before
    batch, n = 10, len(prompt_table())
    writer = Lockstep(CHECKPOINT_WRITER, ROOT, store_copy, batch, log=tmp_path / "writer.log")
    writer.expect("registered")
    assert shown() == before
    for k in range(n // batch):
        last = k == n // batch - 1
        writer.go()
        during = shown()  # a rerun while the batch may be being written
        assert during in (before, after) if last else during == before
        writer.expect(f"committed {k}")
        assert shown() == (after if last else before)
    writer.finish()


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
