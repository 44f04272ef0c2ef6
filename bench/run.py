"""Benchmarks: every figure a ratio against a baseline measured in the same run, on the same inputs (this
machine is shared and noisy, so absolute times alone mean little).

    python -m explorer bench [--only live switch eval sampled ui refcache memory interp engines]

One module per bench (BENCHES: the name --only takes → the module under bench/). Each has `measure() ->
dict`, the keys it adds to the results, and `TARGETS`, the figures it is judged by. Each runs in a fresh
process; the results merge into bench/results.json (so --only keeps the other benches' figures), and a
table of the targets is printed.
"""
from __future__ import annotations

import importlib
import json
import sys

from bench.common import RESULTS, ROOT, in_child, write_results

BENCHES = {"live": "live", "switch": "switch", "eval": "eval_throughput", "sampled": "sampled", "ui": "ui",
           "refcache": "refcache", "memory": "memory", "interp": "interp", "engines": "eval_engine"}


def targets() -> dict[str, str]:
    """Every bench's TARGETS, in BENCHES order."""
    out = {}
    for module in BENCHES.values():
        out.update(importlib.import_module(f"bench.{module}").TARGETS)
    return out


def print_table(res: dict) -> None:
    print(f"\n{'figure':28s} {'value':>12s}  target")
    for k, target in targets().items():
        v = res.get(k)
        shown = "n/a" if v is None else format(v, "12.3f")
        print(f"{k:28s} {shown:>12}  {target}")


def main(only: list[str] | None = None) -> int:
    unknown = sorted(set(only or []) - set(BENCHES))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    res = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in only or list(BENCHES):
        print(f"running {name} (in a fresh process) ...", flush=True)
        module = BENCHES[name]
        for key in getattr(importlib.import_module(f"bench.{module}"), "OPTIONAL_KEYS", ()):
            res.pop(key, None)
        res.update(in_child(module, "measure"))
    write_results(res)
    print_table(res)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0
