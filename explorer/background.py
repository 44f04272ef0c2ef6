"""Evaluations the dashboard starts in the background: `python -m explorer eval ...` in its own process.

The dashboard never evaluates in its own process (a page must keep answering while a model generates for
minutes); it starts the same CLI a person would run, writing to the same store, and reads the job's log
for progress. The store is the only channel back: the new checkpoint shows on the map once its first
batch commits, like any other evaluation's.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_text
from .config import ROOT
from .plan import EvalRequest


@dataclass
class Job:
    """One background CLI run: its process and the log its output goes to."""
    key: str
    log: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def failed(self) -> bool:
        return self.process.poll() not in (None, 0)

    def progress(self) -> str:
        """The job's latest line of output (tqdm redraws its bar with carriage returns)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        lines = [p.strip() for p in text.replace("\r", "\n").split("\n") if p.strip()]
        return lines[-1] if lines else ""


def start(key: str, args: list[str], log_dir: Path | None = None) -> Job:
    """Run `python -m explorer <args>` from the project root, its output in a log file."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="explorer-job-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{key}.log"
    with log.open("w") as out:  # the child keeps its own handle; ours closes here
        proc = subprocess.Popen([sys.executable, "-m", "explorer", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Job(key, log, proc)


def interpolated_eval_args(lambda_safe: float, lambda_helpful: float, recipe: dict | None, db: Path,
                           checkpoints: Path, work: Path) -> list[str]:
    """`eval --interpolate` for one slider position, into the store the dashboard shows, with the recipe
    that store's evaluation recorded (its generation settings and judges), so the new point is measured
    exactly like the trained ones beside it."""
    recipe_path = None
    if recipe:
        work.mkdir(parents=True, exist_ok=True)
        recipe_path = work / "recipe.yaml"
        write_text(recipe_path, json.dumps(recipe))  # JSON is YAML
    return EvalRequest(recipe_path=recipe_path and str(recipe_path), db=str(db), checkpoints=str(checkpoints),
                       interpolate=(lambda_safe, lambda_helpful)).to_args()
