"""Write a directory all at once: build it in a hidden temp sibling, then one rename. A process
killed half-way leaves only a `.NAME.tmp-*` directory, which no loader looks at."""
from __future__ import annotations

import os
import shutil
import tempfile
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
