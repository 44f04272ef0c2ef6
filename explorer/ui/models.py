"""The live page's models: the checkpoints on disk (read from their manifests; nothing loaded), the engine
and judges shared by every session (st.cache_resource: loaded once per server), the in-between model's
sliders, and the checkpoints the page opens on."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ..checkpoints import BASE_ID, describe, manifests, model_config, run_id, trained_lambda_safe
from ..config import ConfigError
from ..interpolate import cell_weights, interpolated_id
from . import data, layout, selection


def live_checkpoints() -> dict[str, str]:
    """checkpoint id → label, read from the manifests on disk (cheap; nothing is loaded). Adapters only: the
    live engines switch adapters on one base; an imported full fine-tune is a model of its own."""
    out = {BASE_ID: f"{BASE_ID} (untrained model)"}
    for cid, man in manifests(data.paths().checkpoints).items():
        if "lambda_safe" in man and "lambda_helpful" in man and man.get("weights") != "full":
            out[cid] = f"{cid} (λ_safe {trained_lambda_safe(man):.3g}, λ_helpful {man['lambda_helpful']:.3g})"
    return out


def live_grid() -> dict[tuple[float, float], str]:
    """(λ_safe, λ_helpful) → run id of the main grid's finished runs on its axes, on disk (manifests; nothing
    loaded): the corners a live blend is made of."""
    return {(m["lambda_safe"], m["lambda_helpful"]): cid for cid, m in manifests(data.paths().checkpoints).items()
            if describe(m, False)["on_grid"] and m.get("weights") != "full"}


def live_mix(where, grid: dict[tuple[float, float], str]) -> tuple[str, dict[str, float]] | None:
    """Sliders for a model between trained points on the live page: its id and corner weights {run id: w},
    or None where the cell around the position lacks a trained corner (said on the page)."""
    safe, helpful = pd.Series([k[0] for k in grid]), pd.Series([k[1] for k in grid])
    left, right = where.columns(2)
    ls = layout.lambda_slider(left, "λ_safe of the in-between model", safe, safe.median(), "live_lambda_safe")
    lh = layout.lambda_slider(right, "λ_helpful of the in-between model", helpful, helpful.median(),
                              "live_lambda_helpful")
    corners = cell_weights(safe.tolist(), helpful.tolist(), ls, lh)
    if missing := [run_id(s, h) for s, h in corners if (s, h) not in grid]:
        where.warning(f"The grid cell around λ_safe {ls:g}, λ_helpful {lh:g} lacks the trained point(s) "
                      f"{', '.join(missing)}; move the sliders, or train them.")
        return None
    weights = {grid[c]: w for c, w in corners.items()}
    mix = " + ".join(f"{w:.2f} × {c}" for c, w in weights.items())
    where.caption(f"Interpolated, not trained: {mix}, the adapters' weight updates blended exactly (served by "
                  "setting each adapter's scale; nothing is reloaded).")
    return interpolated_id(ls, lh), weights


def live_defaults(ids: list[str]) -> list[str]:
    """What the live page opens on: the two extremes (the most helpful and the safest evaluated
    checkpoint) and the chosen operating point between them; the first two ids before any evaluation."""
    table = selection.checkpoint_table()
    table = table[table["checkpoint_id"].isin(ids)] if not table.empty else table
    if table.empty:
        return ids[:2]
    helpful = table.sort_values(["over_refusal_rate", "violation_rate", "checkpoint_id"]).iloc[0]["checkpoint_id"]
    safest = table.sort_values(["violation_rate", "over_refusal_rate", "checkpoint_id"]).iloc[0]["checkpoint_id"]
    return list(dict.fromkeys([helpful, selection.operating_point(table), safest]))


@st.cache_resource(show_spinner="Loading the base model and every adapter (once per server)…")
def engine(checkpoints: Path):
    """The live engine (llama.cpp when installed, else PyTorch; explorer/live.py) with every adapter
    loaded, shared by all sessions: requests are serialised inside it. The base model is the one the
    adapters' manifests name."""
    from .. import live  # loads torch: only when the page first generates

    return live.load(checkpoints, model_config(checkpoints))


@st.cache_resource(show_spinner=False)
def live_judges() -> tuple[list, list[str]]:
    """Judges usable live: keyword always; embedding when its weights exist. Returns (judges, notes)."""
    from ..judges import get_judge

    judges, notes = [get_judge("keyword")], []
    try:
        judges.append(get_judge("embedding"))
    except ConfigError as e:
        notes.append(f"embedding judge unavailable: {e}")
    return judges, notes


def verdicts(judges: list, prompt: str, response: str) -> list[tuple[str, str, str]]:
    """(judge name, label, explanation) of each live judge for one answer; a judge that fails says so as
    its explanation, so its own model failing never loses the answer."""
    out = []
    for judge in judges:
        try:
            v = judge.judge([prompt], [response])[0]
            out.append((judge.name, v.label, v.explanation))
        except Exception as e:  # noqa: BLE001 - any judge error is shown, not raised
            out.append((judge.name, "unavailable", str(e)))
    return out
