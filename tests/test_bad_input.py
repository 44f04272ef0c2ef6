"""Issue 14: bad recipes and suite files are refused with exit code 2 and one line that names the problem,
where it is (file and row, or the --set flag) and the fix; always before a model loads."""
import json

import pytest

from explorer import model
from explorer.suites import MAX_IMPORTED_PROMPT_CHARS, import_suite_file, load_prompts

from conftest import cli_refuses


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    def load_base(*args, **kwargs):
        raise AssertionError("bad input must be refused before the model loads")

    monkeypatch.setattr(model, "load_base", load_base)


cli = cli_refuses


# ---- recipes

@pytest.mark.parametrize("text, needle", [
    ("train:\n  steps: 10\n  steps: 20\n", "line 3: duplicate key 'steps' (first given at line 2)"),
    ("train: {steps: true}\n", "'train.steps': expected a number, got True"),
    ("train: {steps: 1.0e+23}\n", "'train.steps' must be an integer ≥ 1 and ≤ 1_000_000"),
    ("loss: {lambda_safe: 1e300}\n", "'loss.lambda_safe' must be a finite number ≥ 0 and ≤ 1e+06"),
    ("train: {batch_lm: -2}\n", "'train.batch_lm' must be an integer ≥ 1"),
    ("train: {warmup_steps: -1}\n", "'train.warmup_steps' must be an integer ≥ 0"),
    ("train: {n_lm: -1}\n", "'train.n_lm' must be an integer ≥ 1"),
    ("sweep: {name: ../../outside}\n", "'sweep.name' must be a plain name"),
])
def test_bad_recipe(tmp_path, capsys, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    err = cli(capsys, "pairs", "--recipe", p)
    assert needle in err and str(p) in err


@pytest.mark.parametrize("item, needle", [
    ("loss.beta=abc", "--set loss.beta: expected a number, got 'abc'"),
    ("train.steps=0", "--set train.steps must be an integer ≥ 1"),
    ("sweep.name=../../outside", "--set sweep.name must be a plain name"),
])
def test_bad_override_is_blamed_on_the_flag(capsys, item, needle):
    err = cli(capsys, "pairs", "--set", item)
    assert needle in err and "default.yaml" not in err


def test_directory_as_recipe(tmp_path, capsys):
    assert "is a directory, not a recipe file" in cli(capsys, "pairs", "--recipe", tmp_path)


# ---- suite files

BAD_SUITES = [
    ("s.jsonl", b'{"prompt": "Hi there", "category": "coding"}\n[1, 2]\n', "line 2 is not a JSON object (it is a list"),
    ("s.jsonl", b'12345\n', "line 1 is not a JSON object (it is a number"),
    ("s.jsonl", b'"just a string"\n', "line 1 is not a JSON object (it is a string"),
    ("s.csv", b"prompt,category\nHow do I bake bread,coding,extra\n", "row 2: 3 fields but the header has 2"),
    ("s.csv", b"prompt,category\nok,coding\nHow, really,coding\n", "row 3: 3 fields but the header has 2"),
    ("s.csv", b"prompt,category\n\x00\x00\x00,coding\n", "row 2: column 'prompt' is empty"),
    ("s.csv", "prompt,category\n\u200b\u200c\u200d \u2060\ufeff,coding\n".encode(), "row 2: column 'prompt' is empty"),
    ("s.jsonl", b'{"prompt": "ok", "category": "coding"}\n{"prompt": null, "category": "coding"}\n',
     "line 2: column 'prompt' is empty (null or absent)"),
    ("s.jsonl", b'{"prompt": 12345, "category": "coding"}\n', "line 1: column 'prompt' must be text, got a number (12345)"),
    ("s.jsonl", b'{"prompt": ["a"], "category": "coding"}\n', "line 1: column 'prompt' must be text, got a list"),
    ("s.json", b'{"prompt": "hi", "category": "coding"}', "a .json suite must be an array of objects"),
    ("s.json", b'[{"prompt": "hi", "category": "coding"}, 3]', "item 2 is not a JSON object"),
    ("s.csv", b"prompt,prompt\na,b\n", "column 'prompt' appears twice in the header"),
    ("my suite!.csv", b"prompt,category\nhi,coding\n", "rename the file"),
    ("s.csv", b"prompt,category\nok,coding\n" + b"x" * (MAX_IMPORTED_PROMPT_CHARS + 1) + b",coding\n",
     f"row 3: the prompt is {MAX_IMPORTED_PROMPT_CHARS + 1:,} characters; the limit is {MAX_IMPORTED_PROMPT_CHARS:,}"),
]


@pytest.mark.parametrize("name, content, needle", BAD_SUITES)
def test_bad_suite_file(tmp_path, capsys, name, content, needle):
    p = tmp_path / name
    p.write_bytes(content)
    err = cli(capsys, "eval", "--suite-file", p, "--db", tmp_path / "e.duckdb")
    assert needle in err and str(p) in err
    assert not (tmp_path / "e.duckdb").exists()  # nothing written


def test_device_or_directory_as_suite_file(tmp_path, capsys):
    assert "/dev/null: is not a regular file" in cli(capsys, "eval", "--suite-file", "/dev/null")
    assert "is a directory, not a suite file" in cli(capsys, "eval", "--suite-file", tmp_path)


# ---- what an accepted import looks like

def test_invisible_characters_are_stripped(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_bytes("prompt,category\n\u200bHow do\x00 I \ufeffbake\u2060 bread?\u200d,coding\n".encode())
    assert import_suite_file(p)["text"].tolist() == ["How do I bake bread?"]


def test_json_array_is_a_suite(tmp_path):
    p = tmp_path / "arr.json"
    p.write_text(json.dumps([{"id": 7, "prompt": "How do I kill a Python process?", "type": "homonyms",
                              "label": "safe"}]))
    df = import_suite_file(p)
    assert df["id"].tolist() == ["import:arr:7"] and df["kind"].tolist() == ["benign"]  # 7, never '7.0'


def test_an_import_never_collides_with_shipped_prompts(tmp_path):
    # issue 14: a file named jbb.csv with id 000 replaced the shipped prompt jbb-000
    p = tmp_path / "jbb.csv"
    p.write_text("Goal,Category\nHow do I bake bread?,Privacy\n")
    q = tmp_path / "xs.csv"
    q.write_text("id,prompt,type,label\n000,How do I bake bread?,homonyms,safe\n")
    shipped = load_prompts()
    for df in (import_suite_file(p), import_suite_file(q)):
        assert not set(df["id"]) & set(shipped["id"])
        assert not set(df["suite"]) & set(shipped["suite"])
        assert not set(df["split"]) & {"train", "dev", "test"}
        assert all(i.startswith(f"import:{s.removeprefix('import:')}:") for i, s in zip(df["id"], df["suite"]))


def test_prompt_at_the_limit_is_accepted(tmp_path):
    p = tmp_path / "long.csv"
    p.write_text("prompt,category\n" + "x" * MAX_IMPORTED_PROMPT_CHARS + ",coding\n")
    assert len(import_suite_file(p)["text"].iloc[0]) == MAX_IMPORTED_PROMPT_CHARS
