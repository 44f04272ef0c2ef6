"""Write a file or a directory all at once: build it under a hidden temp name beside it, then one rename.
A process killed half-way leaves only a `.NAME.tmp-*` file or directory, which no loader looks at. Every
module that writes a file something else later reads (a checkpoint, a cache, the prompt table) goes
through here."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def stale_temps(dest: Path) -> list[Path]:
    return list(Path(dest).parent.glob(f".{Path(dest).name}.tmp-*"))


@contextmanager
def atomic_directory(dest: Path) -> Iterator[Path]:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(dest: Path) -> Iterator[Path]:
    """A temp path to write `dest` to (by any writer: safetensors, a GGUF writer, pandas, DuckDB), renamed
    onto `dest` when the block ends without error, removed when it fails. Not created in advance (DuckDB
    refuses an empty file), and unique per process and thread, so concurrent writers (Ray workers filling
    one cache, two dashboard sessions converting one adapter) never write into each other's file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.unlink(missing_ok=True)  # left by a killed process that had this id
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: Path, text: str, encoding: str = "utf-8") -> Path:
    """`dest` holding `text`, replaced in one rename (JSON included: pass json.dumps(...))."""
    with atomic_file(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)
