"""Subprocess driver for the kill-and-resume tests: runs the tiny sweep or the tiny evaluation,
printing a line per training step / committed batch so the test knows when to SIGKILL."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from explorer import pairs, train  # noqa: E402
from tiny import make_tiny_model, tiny_recipe  # noqa: E402

mode, model_dir, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
pairs.PAIRS_DIR = work / "pairs"
recipe = tiny_recipe(make_tiny_model(model_dir))

if mode in ("sweep", "constrained"):
    from explorer.sweep import run_constrained, run_sweep

    original = train.train_run

    def noisy(base, ps, r, out, **kw):
        kw["on_step"] = lambda s, rec: print(f"step {out.name} {s}", flush=True)
        return original(base, ps, r, out, **kw)

    train.train_run = noisy
    if mode == "sweep":
        run_sweep(recipe, root=work / "checkpoints", progress=False)
    else:  # one run trained to ε = 0.3 by dual ascent, λ_safe moved every 2 steps
        eps = tiny_recipe(model_dir, name="eps", sweep={"target_violation": 0.3, "dual_every": 2, "dual_lr": 1.0},
                          loss={"lambda_safe": 1.0, "lambda_helpful": 0.0})
        run_constrained(eps, root=work / "checkpoints", progress=False)
    print("done", flush=True)
elif mode == "eval":
    from explorer import checkpoints, evaluate, store
    from explorer.judges import KeywordJudge
    from explorer.model import load_base
    from explorer.suites import load_prompts

    base = load_base(recipe.model, progress=False)
    prompts = load_prompts()
    prompts = prompts[prompts["split"] == "test"].groupby("suite").head(3)
    infos = checkpoints.discover(work / "checkpoints" / "tiny", base)
    db = work / "eval.duckdb"
    evaluate.register(infos, prompts, recipe, db)
    original = store.writer

    from contextlib import contextmanager

    @contextmanager
    def noisy_writer(*a, **k):
        with original(*a, **k) as con:
            yield con
        print("committed", flush=True)

    store.writer = noisy_writer
    engine = evaluate.attach_adapters(base, infos)
    evaluate.evaluate(engine, infos, prompts, recipe, [KeywordJudge()], db, progress=False, batch_commit=4)
    print("done", flush=True)
