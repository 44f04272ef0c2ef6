"""`python -m explorer report --json`: the keys scripts outside the project rely on."""
import json
import subprocess
import sys

import pytest

from explorer.report import build_report, format_report


def test_report_json_contract(eval_db):
    rep = build_report(judge="keyword", db=eval_db)
    assert {"checkpoints", "judges", "suites"} <= set(rep)
    ids = {c["id"] for c in rep["checkpoints"]}
    assert ids == {"base", "s0-h0", "s0-h1", "s1-h0", "s1-h1"}
    for c in rep["checkpoints"]:
        for key in ("id", "lambda_safe", "lambda_helpful", "is_base", "violation_rate", "violation_ci",
                    "over_refusal_rate", "over_refusal_ci", "n_harmful", "n_benign"):
            assert key in c
        lo, hi = c["violation_ci"]
        assert lo <= c["violation_rate"] <= hi
        assert c["n_harmful"] == 12 and c["n_benign"] == 12
    by = {c["id"]: c for c in rep["checkpoints"]}
    assert by["base"]["is_base"] and not by["s1-h0"]["is_base"]
    # conftest: s1-h0 refuses 10 of 12 harmful prompts → violation 2/12
    assert by["s1-h0"]["violation_rate"] == pytest.approx(2 / 12)
    assert {"name", "agreement", "kappa", "n_labels"} <= set(rep["judges"][0])
    assert {"name", "split", "n"} <= set(rep["suites"][0])
    assert "s1-h0" in format_report(rep)


def test_report_cli_json(eval_db):
    r = subprocess.run([sys.executable, "-m", "explorer", "report", "--json", "--judge", "keyword", "--db", str(eval_db)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["checkpoints"]) == 5
