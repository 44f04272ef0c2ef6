"""The pipeline end to end on a tiny random Llama: one training step, a 2×2 sweep killed and resumed,
an evaluation killed and resumed, the any-HF-model path and the GGUF → safetensors cache."""
import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import torch

from explorer import checkpoints, pairs, train
from explorer.config import ConfigError
from explorer.model import load_base
from explorer.suites import load_prompts

from optional import require
from tiny import tiny_recipe

HERE = Path(__file__).resolve().parent


def test_any_hf_model_by_path(tiny_dir):
    from explorer.generate import generate_many

    r = tiny_recipe(tiny_dir)
    base = load_base(r.model, progress=False)
    assert base.max_context == 256 and base.device.type in ("cpu", "cuda")
    out = generate_many(base, ["Hello there", "How do I kill a Python process?"], 5)
    assert len(out) == 2 and all(0 < g.n_tokens <= 5 for g in out)


def test_context_length_is_enforced(tiny_dir):
    from explorer.generate import PromptTooLong, generate_batch

    base = load_base(tiny_recipe(tiny_dir).model, progress=False)
    with pytest.raises(PromptTooLong, match="context window"):
        generate_batch(base, ["word " * 400], 8)


def test_one_step_changes_only_adapter_weights(tiny_dir, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model

    monkeypatch.setattr(pairs, "PAIRS_DIR", tmp_path)
    r = tiny_recipe(tiny_dir)
    base = load_base(r.model, training=True, progress=False)
    ps = pairs.cached_pairs(base, load_prompts(), r, progress=False)
    enc = train.encode_pairs(base.tokenizer, ps, r)
    ref = train.reference_logps(base, enc, ps.fingerprint)
    model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # LoRA B starts at zero, so the first step moves B only; a second step then moves A too
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        terms = train.train_step_losses(model, enc, ref, [0, 1], [0, 1], [0], r, 1.0, 1.0,
                                        base.tokenizer.pad_token_id, base.device).terms
        opt.zero_grad()
        terms.total.backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


def _run(mode, tiny_dir, work, kill_after=None):
    """Run the driver; if kill_after(line) is true for an output line, SIGKILL the process there."""
    proc = subprocess.Popen([sys.executable, str(HERE / "tiny_sweep.py"), mode, str(tiny_dir), str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if kill_after and kill_after(line.strip()):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    return proc.returncode, lines


def _adapter_hashes(root):
    return {d.parent.name: checkpoints.adapter_digest(d.parent / "adapter_model.safetensors")
            for d in sorted(Path(root).glob("*/manifest.json"))}


@pytest.fixture(scope="module")
def reference_sweep(tiny_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep-ref")
    rc, lines = _run("sweep", tiny_dir, work)
    assert rc == 0 and lines[-1] == "done"
    return work


def test_tiny_sweep_writes_complete_runs(reference_sweep):
    root = reference_sweep / "checkpoints" / "tiny"
    runs = sorted(p.name for p in root.iterdir())
    assert runs == ["s0-h0", "s0-h1", "s1-h0", "s1-h1"]
    m = json.loads((root / "s1-h1" / "manifest.json").read_text())
    for key in ("lambda_safe", "lambda_helpful", "recipe", "pairs_fingerprint", "base_fingerprint", "code_version",
                "loss_summary", "wall_time_s", "adapter_sha256"):
        assert key in m
    assert len(m["loss_history"]) == 4 and {"total", "lm", "helpful", "safe"} <= set(m["loss_history"][0])
    assert (root / "s1-h1" / "README.md").read_text().startswith("# s1-h1")
    from peft import PeftModel  # plain PEFT loads it

    base = load_base(tiny_recipe(Path(m["recipe"]["model"]["base_model"])).model, progress=False)
    PeftModel.from_pretrained(base.model, str(root / "s1-h1"))


@pytest.mark.parametrize("kill_at", ["step s0-h0 2", "step s0-h1 0", "step s1-h1 3"])
def test_sweep_killed_and_resumed_matches_uninterrupted(tiny_dir, tmp_path, reference_sweep, kill_at):
    rc, lines = _run("sweep", tiny_dir, tmp_path, kill_after=lambda l: l == kill_at)
    assert rc == -signal.SIGKILL
    killed_run = kill_at.split()[1]
    root = tmp_path / "checkpoints" / "tiny"
    assert not (root / killed_run / "manifest.json").exists()  # the interrupted run is not loadable
    base = load_base(tiny_recipe(tiny_dir).model, progress=False)
    infos = checkpoints.discover(root, base)  # only finished runs are discovered
    assert killed_run not in {i.id for i in infos}
    finished = {i.id for i in infos if not i.is_base}
    rc, lines = _run("sweep", tiny_dir, tmp_path)
    assert rc == 0
    # the rerun trains exactly what was unfinished (the killed run and those after it), whichever run was killed
    every_run = {d.parent.name for d in (reference_sweep / "checkpoints" / "tiny").glob("*/manifest.json")}
    assert {l.split()[1] for l in lines if l.startswith("step")} == every_run - finished
    assert killed_run in every_run - finished
    assert _adapter_hashes(root) == _adapter_hashes(reference_sweep / "checkpoints" / "tiny")
    assert not list(root.glob(".*tmp*"))


@pytest.mark.parametrize("kill_after_commits", [1, 3])
def test_eval_killed_and_resumed_counts_each_row_once(tiny_dir, tmp_path, reference_sweep, kill_after_commits):
    import shutil

    shutil.copytree(reference_sweep / "checkpoints", tmp_path / "checkpoints")
    shutil.copytree(reference_sweep / "pairs", tmp_path / "pairs")
    seen = []

    def kill(line):
        seen.append(line == "committed")
        return sum(seen) >= kill_after_commits

    rc, _ = _run("eval", tiny_dir, tmp_path, kill_after=kill)
    assert rc == -signal.SIGKILL
    rc, lines = _run("eval", tiny_dir, tmp_path)
    assert rc == 0
    con = duckdb.connect(str(tmp_path / "eval.duckdb"), read_only=True)
    n_gen, n_distinct = con.execute("select count(*), count(distinct (checkpoint_fp, prompt_id, gen_key)) "
                                    "from generations").fetchone()
    n_prompts = con.execute("select count(*) from prompts").fetchone()[0]
    n_judg = con.execute("select count(*) from judgments").fetchone()[0]
    con.close()
    assert n_gen == n_distinct == 5 * n_prompts and n_judg == n_gen
    rc, lines = _run("eval", tiny_dir, tmp_path)  # nothing left to do
    assert lines.count("committed") == 0


def test_adapter_checks(tiny_dir, reference_sweep, tmp_path):
    import shutil

    base = load_base(tiny_recipe(tiny_dir).model, progress=False)
    run = tmp_path / "s1-h1"
    shutil.copytree(reference_sweep / "checkpoints" / "tiny" / "s1-h1", run)
    m = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**m, "base_fingerprint": "someotherbase"}))
    with pytest.raises(ConfigError, match="trained on base 'someotherbase'"):
        checkpoints.validate_adapter(run, base.fingerprint)
    (run / "manifest.json").write_text(json.dumps(m))
    data = (run / "adapter_model.safetensors").read_bytes()
    (run / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="corrupt or truncated safetensors|does not match"):
        checkpoints.validate_adapter(run, base.fingerprint)
    (run / "adapter_model.safetensors").unlink()
    with pytest.raises(ConfigError, match="adapter file adapter_model.safetensors is missing"):
        checkpoints.validate_adapter(run, base.fingerprint)


def test_nan_loss_stops_without_checkpoint(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(pairs, "PAIRS_DIR", tmp_path / "pairs")
    r = tiny_recipe(tiny_dir, train={"lr": 1.0})
    base = load_base(r.model, training=True, progress=False)
    ps = pairs.cached_pairs(base, load_prompts(), r, progress=False)
    real = train.train_step_losses

    def poisoned(*a, **k):
        out = real(*a, **k)
        return dataclasses.replace(out, terms=dataclasses.replace(out.terms, total=out.terms.total * float("nan")))

    monkeypatch.setattr(train, "train_step_losses", poisoned)
    with pytest.raises(train.TrainingDiverged, match="no checkpoint was written"):
        train.train_run(base, ps, r, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.tmp-*"))


def test_ray_launcher_on_a_local_cluster(tiny_dir, tmp_path, monkeypatch):
    import importlib.util

    require(importlib.util.find_spec("ray") is not None, "ray", "pip install -r requirements-ray.txt")
    import ray
    from explorer.sweep import run_sweep

    monkeypatch.setattr(pairs, "PAIRS_DIR", tmp_path / "pairs")
    recipe = tiny_recipe(tiny_dir, name="tiny-ray", sweep={"launcher": "ray", "cpus_per_run": 1,
                                                           "lambda_safe": [0.0, 1.0], "lambda_helpful": [1.0]})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}})
    try:
        dirs = run_sweep(recipe, root=tmp_path / "checkpoints", progress=False)
    finally:
        ray.shutdown()
    assert sorted(d.name for d in dirs) == ["s0-h1", "s1-h1"]
    assert all((d / "manifest.json").is_file() for d in dirs)


def test_ray_evaluation_matches_the_local_one_and_resumes(tiny_dir, tmp_path, reference_sweep):
    import importlib.util

    require(importlib.util.find_spec("ray") is not None, "ray", "pip install -r requirements-ray.txt")
    import duckdb
    import ray
    from explorer import checkpoints
    from explorer.evaluate import attach_adapters, evaluate, evaluate_ray, register
    from explorer.judges import KeywordJudge
    from explorer.suites import load_prompts

    recipe = tiny_recipe(tiny_dir)
    base = load_base(recipe.model, progress=False)
    prompts = load_prompts()
    prompts = prompts[prompts["split"] == "test"].groupby("suite").head(2)
    infos = checkpoints.discover(reference_sweep / "checkpoints" / "tiny", base)
    local, remote = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    for db in (local, remote):
        register(infos, prompts, recipe, db)
    evaluate(attach_adapters(base, infos), infos, prompts, recipe, [KeywordJudge()], local, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}})
    try:
        first = evaluate_ray(base, infos, prompts, recipe, [KeywordJudge()], remote, progress=False)
        again = evaluate_ray(base, infos, prompts, recipe, [KeywordJudge()], remote, progress=False)
    finally:
        ray.shutdown()
    assert first["generated"] == len(infos) * len(prompts) and again == {"generated": 0, "judged": 0}
    rows = "select checkpoint_id, prompt_id, response from generations order by all"
    with duckdb.connect(str(local), read_only=True) as a, duckdb.connect(str(remote), read_only=True) as b:
        assert a.execute(rows).fetchall() == b.execute(rows).fetchall()
        assert b.execute("select count(*) from judgments").fetchone()[0] == first["generated"]


def test_dual_ascent_moves_log_lambda_by_the_constraint_violation():
    """log λ ← log λ + η·(v̂ − ε) every `every` steps: up while v̂ > ε, down below it (Safe RLHF's update)."""
    import math

    estimates = iter([0.6, 0.1])
    dual = train.DualAscent(lambda model: next(estimates), target=0.3, lr=2.0, every=2, log_lambda=0.0)
    model = torch.nn.Linear(1, 1)
    for step in range(4):
        dual.after_step(step, model)
    assert [t["step"] for t in dual.trajectory] == [1, 3]
    assert dual.trajectory[0]["lambda_safe"] == pytest.approx(math.exp(2.0 * 0.3))
    assert dual.lambda_safe == pytest.approx(math.exp(2.0 * 0.3 + 2.0 * (0.1 - 0.3)))
    assert model.training  # put back in training mode after each estimate


def test_a_constrained_run_records_its_dual_ascent_and_is_not_trained_twice(tiny_dir, tmp_path, monkeypatch):
    """`sweep --target-violation ε` on the tiny model: λ_safe moved by v̂ measured on dev prompts, its
    trajectory in the manifest, the run marked constrained; a second call finds it finished."""
    import math

    from explorer.checkpoints import describe, run_info
    from explorer.sweep import run_constrained

    monkeypatch.setattr(pairs, "PAIRS_DIR", tmp_path / "pairs")
    recipe = tiny_recipe(tiny_dir, name="eps", sweep={"target_violation": 0.3, "dual_every": 2, "dual_lr": 1.0},
                         loss={"lambda_safe": 1.0, "lambda_helpful": 0.0})
    out = run_constrained(recipe, root=tmp_path / "checkpoints", progress=False)
    assert out.name == "constrained-eps0.3-h0"
    m = json.loads((out / "manifest.json").read_text())
    traj = m["lambda_trajectory"]
    assert [t["step"] for t in traj] == [1, 3] and all(0 <= t["violation_estimate"] <= 1 for t in traj)
    log_lam = 0.0  # log λ_safe = log 1 at the start
    for t in traj:
        log_lam += 1.0 * (t["violation_estimate"] - 0.3)
        assert t["lambda_safe"] == pytest.approx(math.exp(log_lam))
    assert m["final_lambda_safe"] == pytest.approx(traj[-1]["lambda_safe"])
    assert describe(m, False) == {"kind": "constrained", "target_violation": 0.3, "variant": None, "blend_method": None,
                                  "constraint_method": "dual ascent", "on_grid": False, "knobs": None}
    assert run_info(out, m).lambda_safe == pytest.approx(m["final_lambda_safe"])  # the multiplier it found, not 1
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert run_constrained(recipe, root=tmp_path / "checkpoints", progress=False) == out
    assert (out / "manifest.json").stat().st_mtime_ns == mtime


def test_a_constrained_run_killed_mid_way_restarts_cleanly(tiny_dir, tmp_path_factory):
    """SIGKILL a run trained to ε after its second dual update has been made: nothing half-written is
    left or discovered, and the rerun writes the adapter and λ trajectory an uninterrupted run writes."""
    def constrained_run(kill_after=None):
        work = tmp_path_factory.mktemp("eps")
        rc, lines = _run("constrained", tiny_dir, work, kill_after)
        return rc, work / "checkpoints" / "eps" / "constrained-eps0.3-h0"

    rc, reference = constrained_run()
    assert rc == 0
    rc, killed = constrained_run(kill_after=lambda line: line == "step constrained-eps0.3-h0 3")
    assert rc == -signal.SIGKILL
    assert not (killed / "manifest.json").exists()  # killed while training: nothing was renamed into place
    if killed.parent.exists():
        base = load_base(tiny_recipe(tiny_dir).model, progress=False)
        assert killed.name not in {i.id for i in checkpoints.discover(killed.parent, base)}
    rc, lines = _run("constrained", tiny_dir, killed.parent.parent.parent)
    assert rc == 0 and lines[-1] == "done"
    assert _adapter_hashes(killed.parent) == _adapter_hashes(reference.parent)
    trajectory = [json.loads((d / "manifest.json").read_text())["lambda_trajectory"] for d in (killed, reference)]
    assert trajectory[0] == trajectory[1] and len(trajectory[0]) == 2
    assert not list(killed.parent.glob(".*tmp*"))


@pytest.mark.parametrize("v, chosen, probed", [
    (lambda lam: 1 - lam, 0.75, [1.0, 0.0, 0.5, 0.75, 0.625]),  # binds: the bracket halves toward v = ε
    (lambda lam: 0.9, None, [1.0]),  # out of reach: even the top violates ε
    (lambda lam: 0.1, 0.0, [1.0, 0.0]),  # does not bind: no safety weight needed
])
def test_bisection_keeps_the_smallest_feasible_lambda(v, chosen, probed):
    from explorer.sweep import bisect_lambda_safe

    got, probes = bisect_lambda_safe(v, 0.3, 0.0, 1.0, steps=3)
    assert got == chosen
    assert [p["lambda_safe"] for p in probes] == probed
    assert [p["violation_estimate"] for p in probes] == [v(lam) for lam in probed]


def test_a_bisected_run_is_a_probe_s_adapter_with_its_probes(tiny_dir, tmp_path, monkeypatch):
    """`sweep --target-violation ε --bisect` on the tiny model: the probes are ordinary runs of the sweep (off
    its axes they are no corners), the answer a copy of one probe's adapter marked constrained by bisection;
    a second call finds it finished; a bracket whose top violates ε is refused, naming the fix."""
    from explorer import model
    from explorer.checkpoints import describe, run_info
    from explorer.sweep import OutOfReach, run_bisection

    monkeypatch.setattr(pairs, "PAIRS_DIR", tmp_path / "pairs")
    monkeypatch.setattr(model, "CACHE_DIR", tmp_path / "cache")
    root = tmp_path / "checkpoints"
    recipe = tiny_recipe(tiny_dir, name="bis", sweep={"target_violation": 1.0, "bisect_lambda_safe": [0.5, 1.0],
                                                      "bisect_steps": 1}, loss={"lambda_helpful": 0.0})
    out = run_bisection(recipe, root=root, progress=False)
    assert out.name == "bisect-eps1-h0"
    m = json.loads((out / "manifest.json").read_text())
    # ε = 1 never binds: the top is probed, then the bottom, which is the answer
    assert [p["lambda_safe"] for p in m["bisection"]["probes"]] == [1.0, 0.5]
    probe = root / "bis" / "s0.5-h0"
    assert m["bisection"]["chosen_run"] == probe.name and m["final_lambda_safe"] == 0.5
    assert m["adapter_sha256"] == json.loads((probe / "manifest.json").read_text())["adapter_sha256"]
    assert (out / "adapter_model.safetensors").read_bytes() == (probe / "adapter_model.safetensors").read_bytes()
    assert describe(m, False)["kind"] == "constrained" and describe(m, False)["constraint_method"] == "bisection"
    assert run_info(out, m).lambda_safe == 0.5
    probe_m = json.loads((probe / "manifest.json").read_text())
    assert describe(probe_m, False)["kind"] == "grid" and not describe(probe_m, False)["on_grid"]  # 0.5: off the axes
    assert describe(json.loads((root / "bis" / "s1-h0" / "manifest.json").read_text()), False)["on_grid"]
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert run_bisection(recipe, root=root, progress=False) == out
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    with pytest.raises(OutOfReach, match="out of reach.*raise the top"):
        run_bisection(dataclasses.replace(recipe, sweep=dataclasses.replace(recipe.sweep, target_violation=-1e-9)),
                      root=root, progress=False)
