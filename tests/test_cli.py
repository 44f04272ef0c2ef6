"""The CLI's bad-input contract: one line naming the problem and the fix, exit code 2, no traceback."""
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("recipe, needle", [
    ("loss: {lambda_safe: -1}\n", "'loss.lambda_safe' must be a finite number ≥ 0"),
    ("loss: {lambda_safe: .nan}\n", "'loss.lambda_safe' must be a finite number ≥ 0"),
    ("sweep: {lambda_safe: []}\n", "empty grid"),
    ("loss: {bta: 1}\n", "unknown key 'loss.bta'"),
    ("loss: [1,\n", "malformed YAML"),
])
def test_bad_recipe_exit_2(tmp_path, recipe, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(recipe)
    r = run("sweep", "--recipe", str(p))
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0  # one line


def test_bad_override_and_unknown_judge(tmp_path):
    r = run("sweep", "--set", "lossbeta=1")
    assert r.returncode == 2 and "expected section.key=value" in r.stderr
    r = run("eval", "--judge", "gpt9", "--db", str(tmp_path / "e.duckdb"))
    assert r.returncode == 2 and "unknown judge 'gpt9'" in r.stderr and "Traceback" not in r.stderr


def test_bad_suite_file(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("")
    r = run("eval", "--suite-file", str(p), "--db", str(tmp_path / "e.duckdb"))
    assert r.returncode == 2 and "file is empty" in r.stderr and "Traceback" not in r.stderr


def test_help_for_every_subcommand():
    for cmd in ("setup", "suites", "pairs", "train", "sweep", "eval", "judges", "report", "app", "bench"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "usage" in r.stdout
