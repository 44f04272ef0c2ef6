"""docs/FINDINGS.md is generated (`python -m explorer report --markdown`), never written by hand: the committed
file must equal what the command writes on the shipped store, and every figure in it must be the store's."""
import json
import subprocess
import sys

from explorer import findings
from explorer.config import ROOT

FINDINGS = ROOT / "docs" / "FINDINGS.md"


def _explorer(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_committed_findings_equal_the_command_output():
    written = _explorer("report", "--markdown")
    assert FINDINGS.read_text() == written, (
        "docs/FINDINGS.md is stale: regenerate it with `python -m explorer report --markdown > docs/FINDINGS.md`")


def test_every_checkpoint_row_carries_the_store_rates():
    rep = json.loads(_explorer("report", "--json"))
    text = FINDINGS.read_text()
    for c in rep["checkpoints"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {c['id']} | "))
        assert findings.with_ci(c["violation_rate"], c["violation_ci"]) in row
        assert findings.pct(c.get("unseen_violation_rate")) in row  # the never-seen rate beside the headline


def test_landing_verdict_is_computed_from_the_rates():
    rep = {"checkpoints": [
        {"id": "a", "kind": "constrained", "constraint_method": "dual ascent", "target_violation": 0.2,
         "lambda_safe": 1.0, "lambda_helpful": 0.05, "violation_rate": 0.26, "violation_ci": [0.2, 0.3],
         "over_refusal_rate": 0.3},
        {"id": "b", "kind": "constrained", "constraint_method": "bisection", "target_violation": 0.2,
         "lambda_safe": 1.0, "lambda_helpful": 0.05, "violation_rate": 0.24, "violation_ci": [0.2, 0.3],
         "over_refusal_rate": 0.3}]}
    rows = {line.split(" | ")[1]: line for line in findings.constrained_section(rep, {}) if line.startswith("| 0.2 ")}
    assert "| no |" in rows["dual ascent"] and "| yes |" in rows["bisection"]


def test_the_readme_fits_a_newcomer_and_links_what_moved_out():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 8000, f"README.md is {len(readme)} characters; move detail to docs/ (the limit is 8,000)"
    for link in ("docs/FINDINGS.md", "docs/METHODS.md", "docs/map.png"):
        assert link in readme and (ROOT / link).is_file()
