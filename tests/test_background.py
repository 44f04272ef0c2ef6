"""Background evaluations started by the dashboard: a real child process, its progress and its failure."""
import time

from explorer import background


def _wait(job, seconds=60):
    deadline = time.monotonic() + seconds
    while job.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not job.running


def test_a_job_reports_its_last_line_and_its_exit(tmp_path, monkeypatch):
    job = background.start("help", ["eval", "--help"], tmp_path)
    _wait(job)
    assert not job.failed and "--interpolate" in job.log.read_text()
    bad = background.start("bad", ["eval", "--interpolate", "nonsense"], tmp_path)
    _wait(bad)
    assert bad.failed and "--interpolate" in bad.progress()  # the CLI's one-line refusal, last in the log


def test_the_interpolated_eval_runs_with_the_stores_recipe(tmp_path):
    args = background.interpolated_eval_args(2, 0.05, {"eval": {"max_new_tokens": 7}}, tmp_path / "e.duckdb",
                                             tmp_path / "ck", tmp_path / "work")
    assert args[:3] == ["eval", "--interpolate", "2,0.05"]
    recipe = args[args.index("--recipe") + 1]
    from explorer.config import load_recipe

    assert load_recipe(recipe).eval.max_new_tokens == 7
