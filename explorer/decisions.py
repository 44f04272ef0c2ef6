"""Decision records: an operating point frozen together with the evidence for choosing it.

A record is a plain JSON-able dict: the checkpoint and its λs, the judge, the headline rates with
their Wilson intervals (and the baseline's, with deltas), the per-category table, a sample of
concrete flips against the baseline, the rationale, the author and the time. Its content hash is
sha256 over the canonical JSON (queries.content_hash). Records are appended to `decisions` in the
reviews store and never updated or deleted; on every read the hash is recomputed from what is stored,
and a record whose content no longer matches its hash is flagged `tampered`.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import metrics, queries, store
from .config import ConfigError

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # UTC, microseconds: what a DuckDB timestamp holds exactly
FLIPS_PER_KIND = 2  # concrete examples frozen per kind of flip
# record key (a headline rate: its checkpoint_table columns <key>_rate, _lo, _hi, _k and its denominator
# metrics.RATE_DENOMINATORS[key]) → what it counts, in the record's reading order
HEADLINE = {
    "violation": "harmful prompts not fully refused",
    "over_refusal": "benign-but-sensitive prompts refused, fully or partly",
    "partial_over_refusal": "benign prompts partly refused",
    "general_refusal": "ordinary requests refused",
}
# Stored as columns as well as in the payload; on read the columns win, so editing either is detected.
COLUMNS = ("created_at", "author", "checkpoint_id", "lambda_safe", "lambda_helpful", "judge", "rationale")


@dataclass(frozen=True)
class StoredDecision:
    id: int
    record: dict
    content_hash: str
    tampered: bool


def _num(x) -> float | None:
    """JSON-safe rate: NaN (no prompts of a kind) becomes None."""
    if x is None or pd.isna(x):
        return None
    return float(x)


def _int(x) -> int | None:
    return None if x is None or pd.isna(x) else int(x)


def headline(row: pd.Series) -> dict:
    out = {}
    for key, meaning in HEADLINE.items():
        out[key] = {"rate": _num(row[f"{key}_rate"]), "lo": _num(row[f"{key}_lo"]), "hi": _num(row[f"{key}_hi"]),
                    "k": _int(row[f"{key}_k"]), "n": _int(row[metrics.RATE_DENOMINATORS[key]]), "meaning": meaning}
    return out


def sample_flips(flips: pd.DataFrame, per_kind: int = FLIPS_PER_KIND) -> list[dict]:
    """A few flips of each kind (first by prompt id, so the sample is deterministic)."""
    if flips.empty:
        return []
    f = flips.sort_values(["flip", "prompt_id"]).groupby("flip", sort=True).head(per_kind)
    return [{"prompt_id": r.prompt_id, "suite": r.suite, "category": r.category, "kind": r.kind, "flip": r.flip,
             "prompt": r.text, "baseline_label": r.label_a, "baseline_response": r.response_a,
             "label": r.label_b, "response": r.response_b} for r in f.itertuples()]


def build(table: pd.DataFrame, outcomes: pd.DataFrame, responses: pd.DataFrame, checkpoint_id: str,
          baseline_id: str, judge: str, judge_version: str, use_human: bool, rationale: str, author: str,
          *, gen_key: str, split: str = queries.DEFAULT_SPLIT, now: datetime | None = None) -> dict:
    """Freeze one operating point. `table` is queries.checkpoint_table, `outcomes` queries.outcomes and
    `responses` queries.responses(a=baseline_id, b=checkpoint_id) (every prompt, or only the flips:
    queries.flips), all three with the same judge, override
    setting, split and evaluation (`gen_key`)."""
    if not rationale.strip():
        raise ConfigError("write a rationale: where are we trading helpfulness for safety, and why?")
    if not author.strip():
        raise ConfigError("enter an author: every decision record names who made it")
    rows = table.set_index("checkpoint_id")
    for cid in (checkpoint_id, baseline_id):
        if cid not in rows.index:
            raise ConfigError(f"checkpoint {cid!r} has no complete evaluation with judge {judge!r}")
    row, base = rows.loc[checkpoint_id], rows.loc[baseline_id]
    flips = metrics.flips(responses)
    cats = metrics.category_rates(outcomes, checkpoint_id)
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    return {
        "checkpoint_id": checkpoint_id, "lambda_safe": float(row["lambda_safe"]),
        "lambda_helpful": float(row["lambda_helpful"]), "judge": judge, "judge_version": judge_version,
        "human_labels_override": bool(use_human), "split": split, "gen_key": gen_key,
        "metrics": headline(row), "capability_nll": _num(row.get("mean_nll")),
        "baseline_id": baseline_id, "baseline_metrics": headline(base),
        "deltas": {k: _num(v) for k, v in metrics.deltas(row, base).items()},
        "categories": [{**r, "k": _int(r["k"]), "n": _int(r["n"]), "rate": _num(r["rate"]), "lo": _num(r["lo"]),
                        "hi": _num(r["hi"])} for r in cats.to_dict("records")],
        "flip_counts": {k: int(v) for k, v in flips["flip"].value_counts().sort_index().items()} if len(flips) else {},
        "flips": sample_flips(flips),
        "rationale": rationale.strip(), "author": author.strip(), "created_at": now.strftime(TIME_FORMAT),
    }


def save(record: dict, reviews: Path | None = None) -> StoredDecision:
    """Append the record (insert only; nothing here updates or deletes a decision)."""
    h = queries.content_hash(record)
    with store.writer("reviews", reviews) as con:
        new_id = con.execute(store.sql("insert_decision"), {
            **{c: record[c] for c in COLUMNS}, "created_at": datetime.strptime(record["created_at"], TIME_FORMAT),
            "payload": json.dumps(record, sort_keys=True), "content_hash": h}).fetchone()[0]
    return StoredDecision(int(new_id), record, h, tampered=False)


def load(db: Path | None = None, reviews: Path | None = None) -> list[StoredDecision]:
    """Every stored decision, newest first, each re-verified against its stored hash."""
    out = []
    for r in store.query("decisions", eval_path=db, reviews_path=reviews).itertuples():
        record = json.loads(r.payload)
        record |= {"created_at": pd.Timestamp(r.created_at).strftime(TIME_FORMAT), "author": r.author,
                   "checkpoint_id": r.checkpoint_id, "lambda_safe": float(r.lambda_safe),
                   "lambda_helpful": float(r.lambda_helpful), "judge": r.judge, "rationale": r.rationale}
        out.append(StoredDecision(int(r.id), record, r.content_hash,
                                  tampered=queries.content_hash(record) != r.content_hash))
    return out


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!|~#])")  # characters that start Markdown links, images, emphasis, cells
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:+=-]+$")


def _md_text(value) -> str:
    """Any value as inert Markdown text: HTML escaped (a viewer shows `<img ...>`, never renders it), Markdown
    punctuation backslash-escaped (no image, link or table cell can start inside it), one line."""
    text = " ".join(str(value).splitlines())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=True))


def _md_code(value) -> str:
    """An id shown as `code` when it is a plain id; anything else as escaped text."""
    text = str(value)
    return f"`{text}`" if _PLAIN_ID.match(text) else _md_text(text)


def _pct(m: dict | None) -> str:
    if not m or m["rate"] is None:
        return "–"
    return _md_text(f"{m['rate']:.1%} (95% interval {m['lo']:.1%}–{m['hi']:.1%}; {m['k']}/{m['n']})")


def _fenced(text) -> str:
    """A code block that the text itself cannot close (model output may contain backticks)."""
    text = str(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _cells(*values) -> str:
    return "| " + " | ".join(values) + " |"


def to_markdown(d: StoredDecision) -> str:
    """The record as Markdown. Every stored value passes through _md_text / _md_code / _fenced: a record
    is user text (and may have been tampered with), so nothing in it may render as HTML, a link or a cell."""
    r, t = d.record, _md_text
    cid, base = _md_code(r["checkpoint_id"]), _md_code(r["baseline_id"])
    lines = [f"# Decision record #{d.id}: operating point {cid}", "",
             f"- **λ_safe** = {t(format(r['lambda_safe'], 'g'))}, **λ_helpful** = {t(format(r['lambda_helpful'], 'g'))}",
             f"- **Judge**: {t(r['judge'])} ({t(r['judge_version'])}); human labels override: "
             f"{'yes' if r['human_labels_override'] else 'no'}; split: {t(r['split'])}",
             f"- **Author**: {t(r['author'])}; **created** {t(r['created_at'])} UTC",
             f"- **Content hash** (sha256): {_md_code(d.content_hash)}" + ("  **TAMPERED: content does not match "
                                                                          "the hash**" if d.tampered else ""), "",
             "## Rationale", "", *[f"> {t(line)}" for line in str(r["rationale"]).splitlines()], "",
             f"## Rates (baseline: {base})", "",
             "Rates are shares of prompts; the 95% interval is the range the true rate plausibly lies in given how "
             "few prompts were tested (Wilson score interval).", "",
             "| rate | what it counts | this checkpoint | baseline | change |", "|---|---|---|---|---|"]
    for key in [k for k in HEADLINE if k in r["metrics"]]:  # stored JSON has sorted keys: restore reading order
        m = r["metrics"][key]
        delta = r["deltas"].get(f"{key}_rate")
        change = "–" if delta is None else t(f"{delta * 100:+.1f} points")
        lines.append(_cells(t(key.replace("_", " ")), t(m["meaning"]), _pct(m), _pct(r["baseline_metrics"][key]),
                            change))
    lines += ["", "## Per category", "", "| kind | category | measured | rate | 95% interval | k/n |",
              "|---|---|---|---|---|---|"]
    for c in r["categories"]:
        rate = "–" if c["rate"] is None else f"{c['rate']:.1%}"
        ci = "–" if c["lo"] is None else f"{c['lo']:.1%}–{c['hi']:.1%}"
        lines.append(_cells(t(c["kind"]), t(c["category"]), t(c["metric"]), t(rate), t(ci), t(f"{c['k']}/{c['n']}")))
    counts = ", ".join(f"{t(k)}: {t(v)}" for k, v in r["flip_counts"].items()) or "none"
    lines += ["", f"## Concrete flips against {base}", "", f"Counts: {counts}.", ""]
    for f in r["flips"]:
        lines += [f"### {t(f['flip'])}: {t(f['prompt_id'])} ({t(f['kind'])}, {t(f['category'])})", "", "Prompt:", "",
                  _fenced(f["prompt"]), "", f"Baseline {base} ({t(f['baseline_label'])}):", "",
                  _fenced(f["baseline_response"]), "", f"{cid} ({t(f['label'])}):", "",
                  _fenced(f["response"]), ""]
    return "\n".join(lines) + "\n"
